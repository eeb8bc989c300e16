"""The transport adapter protocol and its registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponse

from rooms.inbound import InboundMessage, InboundResult
from rooms.models import Channel, Delivery


@dataclass
class SendResult:
    """How one send ended, classified by the adapter that knows its vendor.

    Two questions about a failure: may the same send succeed later
    (``retryable``), and does it say the vendor or the network is sick
    (``sick``, which counts toward the channel's circuit breaker)? By default
    the answers go together: a network error, a timeout, a 5xx, 408 or 429 is
    both; a permanent 4xx for one bad recipient is neither. An adapter whose
    vendor says otherwise sets ``counts_against_breaker`` explicitly.
    """

    ok: bool
    provider_message_id: str = ""
    error: str = ""
    # False for errors a retry cannot fix (a 4xx other than 408/429).
    retryable: bool = True
    # Seconds the provider asked us to wait (Retry-After), if any.
    retry_after: float | None = None
    # None: follow ``retryable``. True/False: this failure does / does not count toward the breaker.
    counts_against_breaker: bool | None = None
    # The vendor's status for an accepted send ("queued" or "sent"; a DeliveryStatus value); empty: sent.
    status: str = ""
    # The vendor's error code, for a failure.
    error_code: str = ""
    # How it went where the channel can fall back (RCS sent as "sms"); empty when there is no choice.
    sent_as: str = ""

    @property
    def sick(self) -> bool:
        """Whether this failure says the vendor or the network is unwell (counts toward the breaker)."""
        if self.ok:
            return False
        if self.counts_against_breaker is not None:
            return self.counts_against_breaker
        return self.retryable


@dataclass
class StatusUpdate:
    provider_message_id: str
    status: str  # a rooms.enums.DeliveryStatus value
    error: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    # How the vendor carried it, when the callback says (RCS or its SMS fallback).
    sent_as: str = ""


@dataclass(frozen=True)
class ConfigField:
    """One key of a channel's ``config`` that a provider reads (shown and checked by the admin)."""

    name: str
    label: str
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider needs and offers, for the admin's channel form and ``add_channel``.

    ``webhook`` says how its inbound requests are verified: ``"signature"``
    (the vendor signs them), ``"token"`` (the vendor cannot sign: the webhook
    URL carries a per-channel secret token), or ``""`` (it takes no webhooks).
    ``one_of`` lists groups of config keys of which at least one must be set
    (Twilio's ``from`` or ``messaging_service_sid``).
    """

    label: str
    channel_types: frozenset[str]
    config_fields: tuple[ConfigField, ...] = ()
    secrets: tuple[str, ...] = ()
    required_secrets: tuple[str, ...] = ()
    webhook: str = "signature"
    status_callbacks: bool = True
    one_of: tuple[tuple[str, ...], ...] = ()

    def config_errors(self, config: dict[str, Any]) -> list[tuple[str, str]]:
        """What is missing from ``config``, as ``(key, message)`` pairs; empty when it is complete."""
        errors = [
            (f.name, f"{f.label} is required")
            for f in self.config_fields
            if f.required and not str(config.get(f.name) or "").strip()
        ]
        for group in self.one_of:
            if not any(str(config.get(k) or "").strip() for k in group):
                errors.append((group[0], "one of " + ", ".join(group) + " is required"))
        return errors


def delivery_idempotency_key(delivery: Delivery) -> str:
    """The key a vendor sees on every attempt of one delivery, so a retry after a lost answer sends nothing twice."""
    return f"roomkit-{delivery.event_id}-{delivery.pk}"


@dataclass
class InboundParse:
    messages: list[InboundMessage]
    # Optional vendor-specific reply (TwiML, a challenge); else the default JSON.
    response: HttpResponse | None = None


class TransportProvider(Protocol):
    name: str
    spec: ProviderSpec

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        """True when the request really comes from the vendor (signature check)."""
        ...

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        """Turn a verified webhook into messages; raise InvalidInput on bad payloads."""
        ...

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        """What to answer the vendor once the messages are stored."""
        ...

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        """Delivery-status callbacks."""
        ...

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        """GET verification handshakes (Meta's hub.challenge); None if unsupported."""
        ...

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery; never raises for vendor errors, returns them."""
        ...


_registry: dict[str, Callable[[], TransportProvider]] = {}
_instances: dict[str, TransportProvider] = {}


def register_provider(name: str, factory: Callable[[], TransportProvider]) -> None:
    _registry[name] = factory
    _instances.pop(name, None)


def get_provider(name: str) -> TransportProvider | None:
    if name not in _instances:
        factory = _registry.get(name)
        if factory is None:
            return None
        _instances[name] = factory()
    return _instances[name]


def provider_names(channel_type: str | None = None) -> list[str]:
    """Registered provider names, or those that serve ``channel_type``."""
    if channel_type is None:
        return sorted(_registry)
    return sorted(n for n in _registry if channel_type in get_provider(n).spec.channel_types)
