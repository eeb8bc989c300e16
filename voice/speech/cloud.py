"""What the cloud engines share: one HTTP client per configuration, and vendor failures as ``SpeechError``.

API keys go into request headers and nowhere else: not into messages, not
into ``repr``, not into logs.
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import openai

from rooms.infra.backoff import parse_retry_after
from rooms.infra.clients import cached_client, retryable_status
from voice.speech.base import SpeechError


def openai_client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    # Retries are the caller's to decide (a voice turn cannot wait for backoff), not the SDK's.
    return cached_client(
        ("voice", "openai", api_key, base_url, timeout),
        lambda: openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0),
    )


def http_client(timeout: float) -> httpx.Client:
    # The first byte of speech is what a caller waits for: the read timeout bounds
    # the wait between chunks, not the whole reply.
    return cached_client(
        ("voice", "httpx", timeout),
        lambda: httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))),
    )


def status_error(vendor: str, status: int, body: str, headers: Any) -> SpeechError:
    """A vendor's non-2xx answer: retryable for 408, 409, 429 and 5xx, final for the other 4xx."""
    return SpeechError(
        f"{vendor} answered {status}: {body.strip()[:300]}",
        retryable=retryable_status(status),
        status=status,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def openai_error(exc: Exception) -> SpeechError:
    """The ``openai`` SDK's exceptions (and its HTTP library's, mid-stream) as ``SpeechError``."""
    if isinstance(exc, SpeechError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return SpeechError(
            f"openai answered {exc.status_code}: {exc.message}"[:400],
            retryable=retryable_status(exc.status_code),
            status=exc.status_code,
            retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return SpeechError("openai did not answer in time", retryable=True)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return SpeechError(f"openai connection failed: {exc}", retryable=True)
    return SpeechError(f"openai: {type(exc).__name__}: {exc}", retryable=False)


def httpx_error(vendor: str, exc: httpx.HTTPError) -> SpeechError:
    """Transport failures of a plain ``httpx`` call: all worth another attempt."""
    if isinstance(exc, httpx.TimeoutException):
        return SpeechError(f"{vendor} did not answer in time", retryable=True)
    return SpeechError(f"{vendor} connection failed: {type(exc).__name__}: {exc}", retryable=True)
