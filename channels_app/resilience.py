"""Circuit breaker and rate limit per channel, shared by every process.

With ``REDIS_URL`` the state lives in Redis (several workers must agree that a
provider is down, and share one send budget); without it, in process memory.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from django.conf import settings

# Breaker: open after this many consecutive failures, for cooldown seconds; then
# one trial call is let through (half-open) and its outcome closes or re-opens.
FAILURE_THRESHOLD = 5
COOLDOWN_SECONDS = 30.0


@lru_cache(maxsize=1)
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


class _MemoryState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: dict[str, int] = {}
        self.open_until: dict[str, float] = {}
        self.trial: dict[str, float] = {}
        self.buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, stamp)


_mem = _MemoryState()


def breaker_allows(channel_id: str, *, threshold: int = FAILURE_THRESHOLD, cooldown: float = COOLDOWN_SECONDS) -> bool:
    """False while the channel's breaker is open (skip the call, retry later)."""
    now = time.time()
    if settings.REDIS_URL:
        r = _redis()
        until = r.get(f"rk:cb:{channel_id}:open_until")
        if until is None or float(until) <= now:
            if until is not None:
                # Half-open: the first caller after the cooldown gets the trial.
                return bool(r.set(f"rk:cb:{channel_id}:trial", "1", nx=True, ex=int(cooldown) or 1))
            return True
        return False
    with _mem.lock:
        until = _mem.open_until.get(channel_id)
        if until is None:
            return True
        if until > now:
            return False
        if _mem.trial.get(channel_id, 0) > now:
            return False
        _mem.trial[channel_id] = now + cooldown
        return True


def breaker_record(channel_id: str, ok: bool, *, threshold: int = FAILURE_THRESHOLD, cooldown: float = COOLDOWN_SECONDS) -> None:
    now = time.time()
    if settings.REDIS_URL:
        r = _redis()
        if ok:
            r.delete(f"rk:cb:{channel_id}:failures", f"rk:cb:{channel_id}:open_until", f"rk:cb:{channel_id}:trial")
            return
        failures = r.incr(f"rk:cb:{channel_id}:failures")
        r.expire(f"rk:cb:{channel_id}:failures", int(cooldown * 10))
        if failures >= threshold:
            r.set(f"rk:cb:{channel_id}:open_until", now + cooldown, ex=int(cooldown * 10))
            r.delete(f"rk:cb:{channel_id}:trial")
        return
    with _mem.lock:
        if ok:
            _mem.failures.pop(channel_id, None)
            _mem.open_until.pop(channel_id, None)
            _mem.trial.pop(channel_id, None)
            return
        _mem.failures[channel_id] = _mem.failures.get(channel_id, 0) + 1
        if _mem.failures[channel_id] >= threshold:
            _mem.open_until[channel_id] = now + cooldown
            _mem.trial.pop(channel_id, None)


def breaker_is_open(channel_id: str) -> bool:
    now = time.time()
    if settings.REDIS_URL:
        until = _redis().get(f"rk:cb:{channel_id}:open_until")
        return until is not None and float(until) > now
    with _mem.lock:
        return _mem.open_until.get(channel_id, 0) > now


# Token bucket in one atomic step: refill by elapsed time, take one token or
# report how long until one is available.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


def rate_limit_wait(channel_id: str, per_second: float | None, burst: float | None = None) -> float:
    """0 if a send may go now (and takes a token); else seconds to wait."""
    if not per_second or per_second <= 0:
        return 0.0
    burst = burst or max(per_second, 1.0)
    now = time.time()
    if settings.REDIS_URL:
        return float(_redis().eval(_BUCKET_LUA, 1, f"rk:rl:{channel_id}", per_second, burst, now))
    with _mem.lock:
        tokens, stamp = _mem.buckets.get(channel_id, (burst, now))
        tokens = min(burst, tokens + (now - stamp) * per_second)
        if tokens >= 1:
            _mem.buckets[channel_id] = (tokens - 1, now)
            return 0.0
        _mem.buckets[channel_id] = (tokens, now)
        return (1 - tokens) / per_second


def reset_all() -> None:
    """Forget all breaker and bucket state (tests, operator 'reset')."""
    with _mem.lock:
        _mem.failures.clear()
        _mem.open_until.clear()
        _mem.trial.clear()
        _mem.buckets.clear()
    if settings.REDIS_URL:
        r = _redis()
        keys = list(r.scan_iter("rk:cb:*")) + list(r.scan_iter("rk:rl:*"))
        if keys:
            r.delete(*keys)
