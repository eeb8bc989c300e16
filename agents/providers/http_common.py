"""Shared plumbing of the adapters that speak a vendor's REST API over httpx (no SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource

from agents.providers.base import ProviderError, ProviderTimeout
from rooms.infra.backoff import parse_retry_after
from rooms.infra.clients import cached_client, retryable_status


def http_client(timeout: float) -> httpx.Client:
    return cached_client(("httpx", timeout), lambda: httpx.Client(timeout=timeout))


def mapped_http_error(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(str(exc) or "timed out")
    if isinstance(exc, httpx.TransportError):
        return ProviderError(f"connection failed: {exc}", retryable=True)
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)


def check_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        raise ProviderError(
            f"{response.status_code}: {response.text[:500]}",
            retryable=retryable_status(response.status_code),
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )


class StreamErrorEvent(ProviderError):
    """The server reported an error inside a stream that had started fine.

    The vendor failed midway (overloaded, internal error): another attempt may
    not, so it is retryable. A request the vendor rejects gets an HTTP error
    status before any stream.
    """

    def __init__(self, error: Any) -> None:
        message = error.get("message") if isinstance(error, dict) else None
        super().__init__(f"error event mid-stream: {message or error}", retryable=True)


def sse_json(response: Any) -> Iterator[dict[str, Any]]:
    """The JSON payload of each server-sent event of ``response``, until ``data: [DONE]``.

    ``httpx-sse`` decodes the stream as the SSE specification says: an event
    ends at a blank line, its ``data:`` lines joined with newlines, ``event:``,
    ``id:`` and ``retry:`` fields taken apart, comments skipped, and CR, LF or
    CRLF line endings, even split across network reads. ``response`` is an
    ``httpx`` response or one of the SDKs' ``httpx2`` responses (same API).
    An ``error`` event, or a payload whose ``error`` is set, raises
    ``StreamErrorEvent``; an event without data (a bare ``retry:`` or ``id:``)
    carries nothing to yield.
    """
    for event in EventSource(response).iter_sse():
        data = event.data
        if data == "[DONE]":
            return
        if not data:
            continue
        payload = json.loads(data)
        if event.event == "error":
            raise StreamErrorEvent(payload.get("error", payload) if isinstance(payload, dict) else payload)
        if not isinstance(payload, dict):
            raise ProviderError(f"stream event is not a JSON object: {data[:200]}", retryable=False)
        if payload.get("error"):
            raise StreamErrorEvent(payload["error"])
        yield payload
