"""One pooled httpx client per thread for outbound provider calls."""

from __future__ import annotations

import threading

import httpx

_local = threading.local()


def http_client() -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        _local.client = client
    return client


def result_for_response(response: httpx.Response) -> tuple[bool, bool, float | None]:
    """(ok, retryable, retry_after) for a vendor's HTTP answer."""
    if 200 <= response.status_code < 300:
        return True, False, None
    retry_after = None
    raw = response.headers.get("Retry-After")
    if raw and raw.isdigit():
        retry_after = float(raw)
    # Never retry a 4xx (the request itself is wrong) except timeouts and throttling.
    retryable = response.status_code >= 500 or response.status_code in (408, 429)
    return False, retryable, retry_after
