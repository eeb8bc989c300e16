"""One HTTP client per configuration for the process, shared by every app's vendor adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

_C = TypeVar("_C")
_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def cached_client(key: tuple, factory: Callable[[], _C]) -> _C:
    """The client built by ``factory`` for ``key``, built once: a client holds a connection pool,
    and reusing its connections saves a TCP (and TLS) handshake per call. Callers namespace
    their keys (the same vendor may be configured differently by two apps)."""
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = factory()
    return client


def retryable_status(status: int | None) -> bool:
    """Whether a vendor's HTTP answer is worth another attempt: none at all, 408, 409, 429 or 5xx."""
    return status is None or status in (408, 409, 429) or status >= 500
