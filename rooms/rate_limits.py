"""Rate limits for the edges, with the ``limits`` library: moving windows, shared through Redis.

A limit is written as ``limits`` parses it (``"20/minute"``, ``"5 per 10
seconds"``); a key is whatever is limited (a client address, a session).
With ``REDIS_URL`` every process counts in the same window; without it, this
process counts alone (the embedded default is one process).
"""

from __future__ import annotations

import time
from functools import lru_cache

from django.conf import settings
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@lru_cache(maxsize=4)
def _limiter(uri: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(uri, key_prefix="roomkit"))


def limiter() -> MovingWindowRateLimiter:
    return _limiter(settings.REDIS_URL or "memory://")


@lru_cache(maxsize=64)
def _item(rule: str) -> RateLimitItem:
    return parse(rule)


def rate_limit_hit(rule: str, *keys: str) -> float:
    """Count one hit against ``rule`` for ``keys``: 0.0 if it is allowed, else seconds until it would be.

    An empty rule is no limit.
    """
    if not rule:
        return 0.0
    item = _item(rule)
    lim = limiter()
    if lim.hit(item, *keys):
        return 0.0
    reset = lim.get_window_stats(item, *keys).reset_time
    return max(reset - time.time(), 0.001)


def rate_limit_reset() -> None:
    """Forget every count (tests; an operator lifting a ban)."""
    limiter().storage.reset()
