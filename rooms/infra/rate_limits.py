"""Rate limits with the ``limits`` library: moving windows, shared through Redis.

The one place limiters are built: the open edges (chat sessions per client
address, uploads per session) and the per-channel delivery limits
(``channels_app.resilience``) use it. A limit is written as ``limits`` parses
it (``"20/minute"``, ``"5 per 10 seconds"``); a key is whatever is limited (a
client address, a session, a channel). With ``REDIS_URL`` every process counts
in the same window; without it, this process counts alone (the embedded
default is one process). ``limits`` is imported on first use: it costs ~0.2 s
at start-up, and most processes never need it.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import MovingWindowRateLimiter

EDGE_PREFIX = "roomkit"


@lru_cache(maxsize=8)
def _build(redis_url: str, prefix: str) -> MovingWindowRateLimiter:
    from limits.storage import MemoryStorage, RedisStorage
    from limits.strategies import MovingWindowRateLimiter

    if redis_url:
        storage = RedisStorage(redis_url, key_prefix=prefix, socket_timeout=5)
    else:
        storage = MemoryStorage()
    return MovingWindowRateLimiter(storage)


def moving_window_limiter(prefix: str = EDGE_PREFIX) -> MovingWindowRateLimiter:
    """This process's limiter for keys under ``prefix`` (Redis with ``REDIS_URL``, else memory)."""
    return _build(settings.REDIS_URL or "", prefix)


@lru_cache(maxsize=64)
def _item(rule: str) -> RateLimitItem:
    from limits import parse

    return parse(rule)


def rate_limit_hit(rule: str, *keys: str) -> float:
    """Count one hit against ``rule`` for ``keys``: 0.0 if it is allowed, else seconds until it would be.

    An empty rule is no limit.
    """
    if not rule:
        return 0.0
    item = _item(rule)
    limiter = moving_window_limiter()
    if limiter.hit(item, *keys):
        return 0.0
    reset = limiter.get_window_stats(item, *keys).reset_time
    return max(reset - time.time(), 0.001)


def rate_limit_reset() -> None:
    """Forget every count of the edges' limits (tests; an operator lifting a ban)."""
    moving_window_limiter().storage.reset()
