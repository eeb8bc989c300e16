"""Circuit breaker and rate limits per channel, shared by every process.

With ``REDIS_URL`` the state lives in Redis (several workers must agree that a
vendor is down, let exactly one probe through, and share one send budget);
without it, in this process's memory (the embedded mode is one process).

Breaker: closed → open after ``failure_threshold`` consecutive *sick* failures
(network errors, timeouts, 5xx, 408, 429; see ``SendResult.sick``) → after
``recovery_timeout_seconds`` half-open, where exactly one caller gets the probe
and everyone else waits → the probe's success closes it, its sick failure
re-opens it for another timeout. A permanent refusal (a 4xx for one bad
recipient) says nothing about the vendor: it neither counts nor resets, and a
probe that ends that way hands the probe to the next caller. A probe that never
reports (its worker died) is presumed lost after ``PROBE_LEASE_SECONDS``.
In Redis every transition is one Lua script on one hash per channel, with the
server's clock, so concurrent workers on any machine agree.

Rate limits: the ``limits`` library's moving windows (its Redis storage with
``REDIS_URL``, memory otherwise), one per configured limit; a send is admitted
only when every window has room, and the wait until the fullest window frees a
slot comes from the limiter's window stats.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from django.conf import settings

from channels_app.delivery_policy import CircuitBreakerPolicy, RateLimitPolicy
from rooms.infra.rate_limits import moving_window_limiter

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import MovingWindowRateLimiter

# Longer than any send may take (the HTTP client gives up after its timeout),
# so a probe still in flight is never mistaken for a lost one.
PROBE_LEASE_SECONDS = 120.0
# The least a deferred send waits: the limiter's clock and ours are not the same instant.
MIN_WAIT_SECONDS = 0.01
_IDLE_TTL_SECONDS = 86400  # breaker state with no news for a day (plus its timeouts) is forgotten
_KEY_PREFIX = "rk:cb:"
_RATE_PREFIX = "rk:rl"

Outcome = Literal["success", "failure", "neutral"]
BreakerStateName = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class BreakerGate:
    """The breaker's answer to "may I send now?"."""

    allowed: bool
    # Set when this caller holds the half-open probe; pass it back to ``breaker_record``.
    probe_token: str = ""
    # When not allowed: seconds until asking again makes sense.
    wait: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class BreakerState:
    state: BreakerStateName
    failures: int
    opened_at: float | None = None  # Unix time
    probe_in_flight: bool = False


# --- Redis --------------------------------------------------------------------------------

# ARGV: recovery, lease, token, ttl. Returns {verdict, wait}.
_ALLOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'opened_at', 'probe', 'probe_at')
local opened = tonumber(s[1])
if not opened then return {'closed', '0'} end
local reopen = opened + tonumber(ARGV[1])
if now < reopen then return {'open', tostring(reopen - now)} end
local probe_at = tonumber(s[3])
if s[2] and probe_at and now < probe_at + tonumber(ARGV[2]) then
  return {'busy', ARGV[1]}
end
redis.call('HSET', KEYS[1], 'probe', ARGV[3], 'probe_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'probe', '0'}
"""

# ARGV: outcome, token, threshold, ttl.
_RECORD_LUA = """
if ARGV[1] == 'success' then
  redis.call('DEL', KEYS[1])
  return 'closed'
end
local s = redis.call('HMGET', KEYS[1], 'opened_at', 'probe')
local is_probe = ARGV[2] ~= '' and s[2] == ARGV[2]
if ARGV[1] == 'neutral' then
  if is_probe then redis.call('HDEL', KEYS[1], 'probe', 'probe_at') end
  return 'neutral'
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if is_probe or (not tonumber(s[1]) and failures >= tonumber(ARGV[3])) then
  redis.call('HSET', KEYS[1], 'opened_at', tostring(now))
  redis.call('HDEL', KEYS[1], 'probe', 'probe_at')
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 'recorded'
"""

# Returns {failures, opened_at or '', probe or '', probe_at or '', now}.
_STATE_LUA = """
local t = redis.call('TIME')
local s = redis.call('HMGET', KEYS[1], 'failures', 'opened_at', 'probe', 'probe_at')
return {s[1] or '0', s[2] or '', s[3] or '', s[4] or '', tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)}
"""


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


@lru_cache(maxsize=4)
def _scripts(url: str):
    r = _redis(url)
    return r.register_script(_ALLOW_LUA), r.register_script(_RECORD_LUA), r.register_script(_STATE_LUA)


def _ttl(policy: CircuitBreakerPolicy) -> int:
    return int(policy.recovery_timeout_seconds + PROBE_LEASE_SECONDS) + _IDLE_TTL_SECONDS


# --- memory -------------------------------------------------------------------------------


@dataclass
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probe: str = ""
    probe_at: float = 0.0


_lock = threading.Lock()
_breakers: dict[str, _Breaker] = {}


# --- the breaker --------------------------------------------------------------------------


def breaker_allow(channel_id: str, policy: CircuitBreakerPolicy) -> BreakerGate:
    """May a send on this channel go now? Half-open, exactly one caller gets ``allowed`` (the probe)."""
    recovery = policy.recovery_timeout_seconds
    token = secrets.token_hex(8)
    if settings.REDIS_URL:
        allow, _, _ = _scripts(settings.REDIS_URL)
        verdict, wait = allow(keys=[_KEY_PREFIX + channel_id], args=[recovery, PROBE_LEASE_SECONDS, token, _ttl(policy)])
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        wait = float(wait)
    else:
        now = time.time()
        with _lock:
            b = _breakers.get(channel_id)
            if b is None or b.opened_at is None:
                verdict, wait = "closed", 0.0
            elif now < b.opened_at + recovery:
                verdict, wait = "open", b.opened_at + recovery - now
            elif b.probe and now < b.probe_at + PROBE_LEASE_SECONDS:
                verdict, wait = "busy", recovery
            else:
                b.probe, b.probe_at = token, now
                verdict, wait = "probe", 0.0
    if verdict == "closed":
        return BreakerGate(True)
    if verdict == "probe":
        return BreakerGate(True, probe_token=token)
    reason = "circuit open" if verdict == "open" else "circuit half-open, probe in flight"
    return BreakerGate(False, wait=max(wait, MIN_WAIT_SECONDS), reason=reason)


def breaker_record(channel_id: str, policy: CircuitBreakerPolicy, outcome: Outcome, *, probe_token: str = "") -> None:
    """Tell the breaker how a send ended: ``success`` closes it, a sick ``failure`` counts
    (and re-opens it when it was the probe), ``neutral`` (a permanent refusal) does neither."""
    if outcome not in ("success", "failure", "neutral"):
        raise ValueError(f"unknown outcome {outcome!r}")
    if settings.REDIS_URL:
        _, record, _ = _scripts(settings.REDIS_URL)
        record(keys=[_KEY_PREFIX + channel_id], args=[outcome, probe_token, policy.failure_threshold, _ttl(policy)])
        return
    now = time.time()
    with _lock:
        if outcome == "success":
            _breakers.pop(channel_id, None)
            return
        b = _breakers.setdefault(channel_id, _Breaker())
        is_probe = bool(probe_token) and b.probe == probe_token
        if outcome == "neutral":
            if is_probe:
                b.probe, b.probe_at = "", 0.0
            return
        b.failures += 1
        if is_probe or (b.opened_at is None and b.failures >= policy.failure_threshold):
            b.opened_at = now
            b.probe, b.probe_at = "", 0.0


def breaker_state(channel_id: str, policy: CircuitBreakerPolicy) -> BreakerState:
    """Where the channel's breaker stands now (for the console; changes nothing)."""
    if settings.REDIS_URL:
        _, _, state = _scripts(settings.REDIS_URL)
        failures, opened, probe, probe_at, now = (
            v.decode() if isinstance(v, bytes) else v for v in state(keys=[_KEY_PREFIX + channel_id])
        )
        b = _Breaker(int(failures), float(opened) if opened else None, probe, float(probe_at) if probe_at else 0.0)
        now = float(now)
    else:
        now = time.time()
        with _lock:
            found = _breakers.get(channel_id)
            b = _Breaker(found.failures, found.opened_at, found.probe, found.probe_at) if found else _Breaker()
    if b.opened_at is None:
        return BreakerState("closed", b.failures)
    if now < b.opened_at + policy.recovery_timeout_seconds:
        return BreakerState("open", b.failures, b.opened_at)
    in_flight = bool(b.probe) and now < b.probe_at + PROBE_LEASE_SECONDS
    return BreakerState("half-open", b.failures, b.opened_at, probe_in_flight=in_flight)


# --- rate limits --------------------------------------------------------------------------


def _limiter() -> MovingWindowRateLimiter:
    return moving_window_limiter(_RATE_PREFIX)


def _items(policy: RateLimitPolicy) -> list[RateLimitItem]:
    from limits import RateLimitItemPerSecond

    return [RateLimitItemPerSecond(w.amount, w.seconds, namespace="rk") for w in policy.windows()]


def _wait_for_room(limiter: MovingWindowRateLimiter, items: list[RateLimitItem], channel_id: str) -> float:
    """0 when every window has room; else seconds until the fullest one frees a slot."""
    wait = 0.0
    for item in items:
        if not limiter.test(item, channel_id):
            reset_at = limiter.get_window_stats(item, channel_id).reset_time
            wait = max(wait, reset_at - time.time(), MIN_WAIT_SECONDS)
    return wait


def rate_limit_acquire(channel_id: str, policy: RateLimitPolicy) -> float:
    """0.0 when a send may go now (and it is counted in every window); else seconds to wait.

    Every window is tested before any is charged, so a send one window refuses
    does not use up another's budget. Two workers racing for the last slot:
    the charge itself is atomic per window, and the loser waits (the windows it
    had already charged stay charged: never more than configured, rarely less).
    """
    items = _items(policy)
    if not items:
        return 0.0
    limiter = _limiter()
    wait = _wait_for_room(limiter, items, channel_id)
    if wait > 0:
        return wait
    for item in items:
        if not limiter.hit(item, channel_id):
            return max(_wait_for_room(limiter, items, channel_id), MIN_WAIT_SECONDS)
    return 0.0


def reset_all() -> None:
    """Forget every breaker and rate window (tests)."""
    with _lock:
        _breakers.clear()
    _limiter().storage.reset()
    if settings.REDIS_URL:
        r = _redis(settings.REDIS_URL)
        keys = list(r.scan_iter(_KEY_PREFIX + "*")) + list(r.scan_iter(_RATE_PREFIX + ":*"))
        if keys:
            r.delete(*keys)
