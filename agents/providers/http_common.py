"""Shared plumbing of the adapters that speak a vendor's REST API over httpx (no SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from agents.providers.base import ProviderError, ProviderTimeout, cached_client, retryable_status
from rooms.backoff import parse_retry_after


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


def sse_data(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream's ``data:`` lines (until ``[DONE]``)."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def sse_payloads(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON payload of each server-sent event, until ``[DONE]``, decoded as the spec (and the
    openai SDK's own decoder) says: an event ends at a blank line, its ``data:`` lines joined."""
    data: list[str] = []
    for line in lines:
        if line:
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue  # event names, ids, comments: only the data is used
        if not data:
            continue
        raw = "\n".join(data)
        data = []
        if raw == "[DONE]":
            return
        yield json.loads(raw)
    if data and "\n".join(data) != "[DONE]":
        yield json.loads("\n".join(data))
