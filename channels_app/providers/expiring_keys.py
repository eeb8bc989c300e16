"""Short-lived keys every process sees: seen-once markers (webhook nonces) and small notes.

A webhook nonce must be refused the second time whichever Daphne process the
replay reaches, and a multi-part send must know, on its retry in another
worker, which parts already went. So the store is shared when the deployment
shares anything:

- ``CACHES`` configured in settings: Django's cache (its ``add`` is atomic).
  Give it room: a cache that evicts live entries (LocMem's ``MAX_ENTRIES``,
  300 by default) forgets nonces and lets replays through;
- else ``REDIS_URL``: Redis (``SET NX EX``);
- else an in-process store: right for the embedded single-process mode, and
  the only choice there. It drops an entry only once it has expired (not
  Django's default LocMem cache, which evicts at 300 entries whatever their age).
"""

from __future__ import annotations

import heapq
import threading
import time
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches

_PREFIX = "roomkit:ek:"


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


class _LocalStore:
    """Keys with expiry times in this process; an expired key is gone, a live one is never evicted."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, str]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expires, key = heapq.heappop(self._expiries)
            entry = self._values.get(key)
            if entry is not None and entry[0] == expires:
                del self._values[key]

    def _live(self, key: str, now: float) -> tuple[float, str] | None:
        entry = self._values.get(key)
        return entry if entry is not None and entry[0] > now else None

    def add(self, key: str, value: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            if self._live(key, now):
                return False
            self._values[key] = (now + ttl, value)
            heapq.heappush(self._expiries, (now + ttl, key))
            return True

    def set(self, key: str, value: str, ttl: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            self._values[key] = (now + ttl, value)
            heapq.heappush(self._expiries, (now + ttl, key))

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._live(key, time.monotonic())
            return entry[1] if entry else None


_local = _LocalStore()


def _backend() -> str:
    if settings.is_overridden("CACHES"):
        return "cache"
    return "redis" if settings.REDIS_URL else "local"


def _seconds(ttl_seconds: float) -> int:
    return max(int(ttl_seconds + 0.999), 1)


def claim_once(key: str, ttl_seconds: float) -> bool:
    """True the first time ``key`` is claimed within ``ttl_seconds``; False for every later claim."""
    backend = _backend()
    if backend == "redis":
        return bool(_redis(settings.REDIS_URL).set(_PREFIX + key, b"1", nx=True, ex=_seconds(ttl_seconds)))
    if backend == "cache":
        return caches["default"].add(_PREFIX + key, "1", timeout=_seconds(ttl_seconds))
    return _local.add(key, "1", ttl_seconds)


def note(key: str, value: str, ttl_seconds: float) -> None:
    """Keep ``value`` under ``key`` for ``ttl_seconds``."""
    backend = _backend()
    if backend == "redis":
        _redis(settings.REDIS_URL).set(_PREFIX + key, value.encode(), ex=_seconds(ttl_seconds))
    elif backend == "cache":
        caches["default"].set(_PREFIX + key, value, timeout=_seconds(ttl_seconds))
    else:
        _local.set(key, value, ttl_seconds)


def read_note(key: str) -> str | None:
    """The value kept under ``key``, or None once it has expired (or was never kept)."""
    backend = _backend()
    if backend == "redis":
        raw = _redis(settings.REDIS_URL).get(_PREFIX + key)
        return raw.decode() if raw is not None else None
    if backend == "cache":
        return caches["default"].get(_PREFIX + key)
    return _local.get(key)
