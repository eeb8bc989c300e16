"""One pooled httpx client per thread for outbound provider calls, and how vendors' HTTP
answers and errors become ``SendResult``s (the classification the retry and the
circuit breaker act on)."""

from __future__ import annotations

import threading

import httpx

from channels_app.providers.base import SendResult
from rooms.infra.backoff import parse_retry_after

_local = threading.local()

# The 4xx answers that say "not now" rather than "never": timeout and throttling.
TRANSIENT_4XX = frozenset({408, 429})


def http_client() -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        _local.client = client
    return client


def is_transient_status(status: int) -> bool:
    """5xx, 408 and 429: the vendor is unwell or busy; the same request may succeed later."""
    return status >= 500 or status in TRANSIENT_4XX


def failure_for_response(response: httpx.Response, *, detail: str | None = None) -> SendResult:
    """A failed send for a vendor's non-2xx answer.

    5xx, 408, 429: retried (after ``Retry-After`` when given, in either form)
    and counted toward the breaker. Any other 4xx: this one send is wrong (a
    bad recipient, a refused payload); it fails at once and says nothing about
    the vendor's health.
    """
    transient = is_transient_status(response.status_code)
    text = detail if detail is not None else response.text[:300]
    return SendResult(
        False,
        error=f"HTTP {response.status_code}: {text}",
        retryable=transient,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        counts_against_breaker=transient,
    )


def failure_for_exception(exc: httpx.HTTPError) -> SendResult:
    """A send that got no answer (connection refused, reset, timeout): retried, counted toward the breaker."""
    return SendResult(False, error=f"{type(exc).__name__}: {exc}", retryable=True, counts_against_breaker=True)
