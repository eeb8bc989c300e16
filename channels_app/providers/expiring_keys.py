"""Short-lived keys every process sees: seen-once markers (webhook nonces) and small notes.

A webhook nonce must be refused the second time whichever Daphne process the
replay reaches, and a multi-part send must know, on its retry in another
worker, which parts already went. So the store is shared when the deployment
shares anything:

- ``CACHES`` configured in settings: Django's cache (its ``add`` is atomic);
- else ``REDIS_URL``: Redis (``SET NX EX``);
- else Django's default cache, which is an in-process store: right for the
  embedded single-process mode, and the only choice there is.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.cache import caches

_PREFIX = "roomkit:ek:"


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _use_redis() -> bool:
    return bool(settings.REDIS_URL) and not settings.is_overridden("CACHES")


def claim_once(key: str, ttl_seconds: float) -> bool:
    """True the first time ``key`` is claimed within ``ttl_seconds``; False for every later claim."""
    ttl = max(int(ttl_seconds + 0.999), 1)
    if _use_redis():
        return bool(_redis(settings.REDIS_URL).set(_PREFIX + key, b"1", nx=True, ex=ttl))
    return caches["default"].add(_PREFIX + key, 1, timeout=ttl)


def note(key: str, value: str, ttl_seconds: float) -> None:
    """Keep ``value`` under ``key`` for ``ttl_seconds``."""
    ttl = max(int(ttl_seconds + 0.999), 1)
    if _use_redis():
        _redis(settings.REDIS_URL).set(_PREFIX + key, value.encode(), ex=ttl)
    else:
        caches["default"].set(_PREFIX + key, value, timeout=ttl)


def read_note(key: str) -> str | None:
    """The value kept under ``key``, or None once it has expired (or was never kept)."""
    if _use_redis():
        raw = _redis(settings.REDIS_URL).get(_PREFIX + key)
        return raw.decode() if raw is not None else None
    return caches["default"].get(_PREFIX + key)
