"""A transport channel's delivery policy: retry, circuit breaker, rate limits.

Kept as JSON in ``Channel.config`` and parsed here, in one place, by the admin
form, ``add_channel --config`` and the delivery service::

    "retry":           {"max_retries", "base_delay_seconds", "max_delay_seconds", "multiplier"}
    "circuit_breaker": {"failure_threshold", "recovery_timeout_seconds"}
    "rate_limit":      {"per_second", "per_minute", "per_hour"}

Every key is optional (defaults below). ``retry.max_attempts`` (attempts in
all, i.e. ``max_retries + 1``) is still read, and the RoomKit library's names
``exponential_base`` and ``max_per_second`` / ``max_per_minute`` /
``max_per_hour`` are accepted as aliases. Rate limits take any positive number
and all that are set apply together; a fractional rate becomes "N per M
seconds" (0.2 per second is 1 per 5 s, 2.5 per second is 5 per 2 s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from rooms.errors import InvalidInput

logger = logging.getLogger(__name__)

SECTIONS = ("retry", "circuit_breaker", "rate_limit")
# A rate-limit window longer than this is refused: "1 per fortnight" is not a send budget.
MAX_WINDOW_SECONDS = 7 * 86400
_DAY = 86400.0

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True, frozen=True)


class RetryPolicy(BaseModel):
    """Retries of a failed send: exponential backoff with jitter, never above ``max_delay_seconds``."""

    model_config = _STRICT

    max_retries: int = Field(4, ge=0, le=100)
    base_delay_seconds: float = Field(1.0, gt=0, le=_DAY)
    max_delay_seconds: float = Field(300.0, gt=0, le=_DAY)
    multiplier: float = Field(2.0, ge=1, le=100, validation_alias=AliasChoices("multiplier", "exponential_base"))
    # The old key: attempts in all. Read, never written back.
    max_attempts: int | None = Field(None, ge=1, le=101, exclude=True)

    @model_validator(mode="after")
    def _coherent(self) -> RetryPolicy:
        if self.max_attempts is not None:
            if "max_retries" in self.model_fields_set and self.max_retries != self.max_attempts - 1:
                raise ValueError("give max_retries or max_attempts (= max_retries + 1), not two different counts")
            object.__setattr__(self, "max_retries", self.max_attempts - 1)
        if self.base_delay_seconds > self.max_delay_seconds:
            raise ValueError("base_delay_seconds must not exceed max_delay_seconds")
        return self

    @property
    def max_attempts_total(self) -> int:
        return self.max_retries + 1


class CircuitBreakerPolicy(BaseModel):
    """Open after ``failure_threshold`` consecutive sick failures; one probe after ``recovery_timeout_seconds``."""

    model_config = _STRICT

    failure_threshold: int = Field(5, ge=1, le=10_000)
    recovery_timeout_seconds: float = Field(30.0, gt=0, le=_DAY)


@dataclass(frozen=True)
class RateWindow:
    """One limit as the limiter holds it: at most ``amount`` sends in any ``seconds``-long window."""

    amount: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.amount} per {self.seconds} s"


def _simplest_fraction(x: Fraction, max_denominator: int) -> Fraction:
    """The first continued-fraction convergent of ``x`` within 0.1 % of it (so 0.3333 is 1/3,
    not 3333/10000), else the closest one whose denominator fits."""
    best = Fraction(0)
    h0, h1, k0, k1 = 0, 1, 1, 0
    rest = x
    while True:
        a = rest.numerator // rest.denominator
        h0, h1 = h1, a * h1 + h0
        k0, k1 = k1, a * k1 + k0
        if k1 > max_denominator:
            return best
        best = Fraction(h1, k1)
        if best and abs(best - x) <= x * Fraction(1, 1000):
            return best
        frac_part = rest - a
        if frac_part == 0:
            return best
        rest = 1 / frac_part


def _window(rate: float, unit_seconds: int, name: str) -> RateWindow:
    # Windows are whole seconds: 0.2/s is exactly 1 per 5 s, 2.5/s is 5 per 2 s.
    frac = _simplest_fraction(Fraction(repr(rate)), MAX_WINDOW_SECONDS // unit_seconds)
    if frac.numerator < 1:
        raise ValueError(f"{rate:g} per {name.removeprefix('per_')} is below one per {MAX_WINDOW_SECONDS // 86400} days")
    return RateWindow(frac.numerator, frac.denominator * unit_seconds)


_UNITS = {"per_second": 1, "per_minute": 60, "per_hour": 3600}


class RateLimitPolicy(BaseModel):
    """Send budgets; every limit that is set applies (a moving window each).

    A moving window keeps one timestamp per send it admitted, so a window holds
    at most 100,000 (10,000 per second): a faster budget is no limit in practice.
    """

    model_config = _STRICT

    per_second: float | None = Field(None, gt=0, le=10_000, validation_alias=AliasChoices("per_second", "max_per_second"))
    per_minute: float | None = Field(None, gt=0, le=100_000, validation_alias=AliasChoices("per_minute", "max_per_minute"))
    per_hour: float | None = Field(None, gt=0, le=100_000, validation_alias=AliasChoices("per_hour", "max_per_hour"))

    @field_validator("per_second", "per_minute", "per_hour")
    @classmethod
    def _representable(cls, rate: float | None, info: ValidationInfo) -> float | None:
        if rate is not None:
            _window(rate, _UNITS[info.field_name], info.field_name)  # refuses a rate too small to express
        return rate

    def windows(self) -> list[RateWindow]:
        """The distinct windows to enforce, shortest first."""
        found: list[RateWindow] = []
        for name, unit in _UNITS.items():
            rate = getattr(self, name)
            if rate is not None:
                window = _window(rate, unit, name)
                if window not in found:
                    found.append(window)
        return sorted(found, key=lambda w: w.seconds)


class DeliveryPolicy(BaseModel):
    """Everything that governs how a channel's deliveries are attempted."""

    model_config = ConfigDict(frozen=True)

    retry: RetryPolicy = RetryPolicy()
    circuit_breaker: CircuitBreakerPolicy = CircuitBreakerPolicy()
    rate_limit: RateLimitPolicy = RateLimitPolicy()

    def describe(self) -> dict[str, str]:
        """The effective policy in words, for the console."""
        r, cb = self.retry, self.circuit_breaker
        windows = self.rate_limit.windows()
        return {
            "retry": (
                f"{r.max_retries} retries ({r.max_attempts_total} attempts); backoff {r.base_delay_seconds:g} s "
                f"× {r.multiplier:g} per retry, jittered, at most {r.max_delay_seconds:g} s"
            ),
            "circuit_breaker": (
                f"opens after {cb.failure_threshold} consecutive network/5xx/408/429 failures; "
                f"one probe after {cb.recovery_timeout_seconds:g} s"
            ),
            "rate_limit": ", ".join(str(w) for w in windows) if windows else "no limit",
        }


def _errors(exc: ValidationError, section: str) -> list[tuple[str, str]]:
    found = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (section, *err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        found.append((path, msg))
    return found


_MODELS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("retry", RetryPolicy),
    ("circuit_breaker", CircuitBreakerPolicy),
    ("rate_limit", RateLimitPolicy),
)


def _parse(config: dict[str, Any] | None) -> tuple[dict[str, BaseModel], list[tuple[str, str]]]:
    parsed: dict[str, BaseModel] = {}
    errors: list[tuple[str, str]] = []
    for section, model in _MODELS:
        raw = (config or {}).get(section)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            errors.append((section, "must be a JSON object"))
            continue
        try:
            parsed[section] = model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_errors(exc, section))
    return parsed, errors


def delivery_policy_errors(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Each problem of a config's delivery policy as ``(path, message)``, e.g. ``("retry.max_retries", …)``."""
    return _parse(config)[1]


def parse_delivery_policy(config: dict[str, Any] | None) -> DeliveryPolicy:
    """The policy in a channel's config; raises ``InvalidInput`` naming each bad key (``retry.max_retries: …``)."""
    parsed, errors = _parse(config)
    if errors:
        detail = "; ".join(f"{path}: {msg}" for path, msg in errors)
        raise InvalidInput(f"invalid delivery policy: {detail}", code="invalid_config")
    return DeliveryPolicy(**parsed)


def channel_delivery_policy(config: dict[str, Any] | None) -> DeliveryPolicy:
    """The policy a delivery runs under. A config stored before validation existed and now
    invalid falls back to the defaults (logged) rather than stranding the outbox."""
    try:
        return parse_delivery_policy(config)
    except InvalidInput as exc:
        logger.warning("channel delivery policy ignored, defaults used: %s", exc.message)
        return DeliveryPolicy()


_CANONICAL = {
    "retry": ("max_retries", "base_delay_seconds", "max_delay_seconds", "multiplier"),
    "circuit_breaker": ("failure_threshold", "recovery_timeout_seconds"),
    "rate_limit": ("per_second", "per_minute", "per_hour"),
}


def configured_sections(config: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The keys a config sets explicitly, under their canonical names (``max_attempts: 3`` reads
    as ``max_retries: 2``); what the admin form starts from. Empty for an invalid config."""
    parsed, errors = _parse(config)
    if errors:
        return {section: {} for section in SECTIONS}
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        model = parsed.get(section)
        values: dict[str, Any] = {}
        if model is not None:
            values = {k: getattr(model, k) for k in _CANONICAL[section] if k in model.model_fields_set}
            if section == "retry" and model.max_attempts is not None:
                values["max_retries"] = model.max_retries
        out[section] = values
    return out
