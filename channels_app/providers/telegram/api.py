"""Calls to the Telegram Bot API (``{api_base}/bot{token}/{method}``) and how its answers become ``SendResult``s.

Every Bot API answer is JSON ``{"ok": true, "result": …}`` or ``{"ok": false,
"error_code", "description", "parameters"?}`` (https://core.telegram.org/bots/api#making-requests).
``parameters.retry_after`` (flood control, a 429) says how long to wait;
``parameters.migrate_to_chat_id`` says a group became a supergroup with a new
id. The bot token is part of every URL, so nothing here puts a URL (or an
exception text that may hold one) into an error, a log line or a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from channels_app.http_client import http_client
from channels_app.providers.base import SendResult
from rooms.models import Channel

DEFAULT_API_BASE = "https://api.telegram.org"


def api_base(channel: Channel) -> str:
    return str(channel.config.get("api_base") or DEFAULT_API_BASE).rstrip("/")


def method_url(channel: Channel, token: str, method: str) -> str:
    return f"{api_base(channel)}/bot{token}/{method}"


def file_url(channel: Channel, token: str, file_path: str) -> str:
    """Where a file ``getFile`` described is downloaded (valid for an hour, says Telegram)."""
    return f"{api_base(channel)}/file/bot{token}/{file_path.lstrip('/')}"


@dataclass
class BotAPIError(Exception):
    """A Bot API call that did not succeed: Telegram's refusal, or no answer at all (``error_code`` 0)."""

    error_code: int
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    http_status: int = 0

    def __str__(self) -> str:
        return f"Telegram {self.error_code or 'network'}: {self.description}"

    @property
    def retry_after(self) -> float | None:
        value = self.parameters.get("retry_after")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _redacted(text: str, token: str) -> str:
    return text.replace(token, "<token>") if token else text


def call(channel: Channel, token: str, method: str, payload: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
    """POST ``payload`` as JSON to ``method``; returns its ``result`` or raises ``BotAPIError``."""
    try:
        response = http_client().post(method_url(channel, token, method), json=payload or {}, timeout=timeout)
    except httpx.HTTPError as exc:
        # httpx may name the URL (and so the token) in its message: keep the kind, and a redacted text.
        raise BotAPIError(0, _redacted(f"{type(exc).__name__}: {exc}", token)[:300]) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise BotAPIError(
            response.status_code, f"HTTP {response.status_code} without a Bot API answer", http_status=response.status_code
        )
    if answer.get("ok") is True and 200 <= response.status_code < 300:
        return answer.get("result")
    code = answer.get("error_code")
    parameters = answer.get("parameters")
    raise BotAPIError(
        code if isinstance(code, int) and not isinstance(code, bool) else response.status_code,
        _redacted(str(answer.get("description") or "no description"), token)[:500],
        parameters if isinstance(parameters, dict) else {},
        http_status=response.status_code,
    )


def failure_for_error(error: BotAPIError) -> SendResult:
    """Telegram's refusal classified for the retry and the breaker.

    No answer, 5xx and 429 (flood control, after its ``retry_after``): retried,
    and counted against the breaker. 400 (bad request: chat not found, a
    message Telegram will not take), 403 (the user blocked the bot, or it was
    removed from the group), 401/404 (a token Telegram does not know): this
    send will never succeed; it fails at once and says nothing of Telegram's
    health.
    """
    code = error.error_code
    transient = code == 0 or code == 429 or code >= 500
    detail = str(error)
    new_chat = error.parameters.get("migrate_to_chat_id")
    if new_chat is not None:
        detail += f" (the group is now chat {new_chat})"
    return SendResult(
        False,
        error=detail,
        retryable=transient,
        retry_after=error.retry_after if transient else None,
        counts_against_breaker=transient,
        error_code=str(code) if code else "network",
    )
