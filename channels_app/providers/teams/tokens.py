"""The bot's own token for the Bot Connector: OAuth 2.0 client credentials, cached until shortly before it expires.

"Authenticate requests from your bot to the Bot Connector service"
(learn.microsoft.com, bot-framework-rest-connector-authentication): ``POST``
the Microsoft identity platform's token endpoint (``token_url``, default
``https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token``, or the
tenant's for a single-tenant bot) with ``grant_type=client_credentials``, the
app id and password, and ``scope=https://api.botframework.com/.default``; the
answer's ``access_token`` goes as ``Authorization: Bearer`` on every Connector
call until ``expires_in`` runs out.

One token per (token URL, app id, password) serves every send of every worker
thread in the process: the first thread to find it missing or near expiry
fetches it while the others wait on the same lock, so a burst of sends costs
one request to the identity platform. A Connector 401 (a token revoked or
rotated early) drops it (``forget``) and the send fetches a new one once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from channels_app.http_client import http_client, is_transient_status
from rooms.infra.backoff import parse_retry_after

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
SCOPE = "https://api.botframework.com/.default"
# Renew this long before the token's expiry, so no send carries a token that dies on the way.
RENEW_BEFORE_SECONDS = 300
# When the answer names no lifetime (it always does), assume the platform's usual hour.
DEFAULT_LIFETIME_SECONDS = 3600


def token_url_for(config: dict) -> str:
    """The token endpoint: config ``token_url``, else the tenant's (``tenant_id``, single-tenant bots), else Bot Framework's."""
    explicit = str(config.get("token_url") or "").strip()
    if explicit:
        return explicit
    tenant = str(config.get("tenant_id") or "").strip()
    if tenant:
        return f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    return DEFAULT_TOKEN_URL


class TokenError(Exception):
    """No token: ``retryable`` says whether asking again later may help (the platform down) or not (bad credentials)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class _Entry:
    token: str = ""
    # When to fetch a new one: before expiry by RENEW_BEFORE_SECONDS, or half the lifetime of a short-lived token.
    renew_at: float = 0.0


class ClientCredentialsTokens:
    """Tokens by (token URL, app id, password), each fetched once and shared until it nears expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @staticmethod
    def _key(token_url: str, app_id: str, app_password: str) -> tuple[str, str, str]:
        # The password is part of the key (a rotated one must not reuse the old token), hashed so it is not kept twice.
        return token_url, app_id, hashlib.sha256(app_password.encode()).hexdigest()

    def _lock_for(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def token(self, *, token_url: str, app_id: str, app_password: str) -> str:
        """A live token (cached or fetched now); raises TokenError."""
        key = self._key(token_url, app_id, app_password)
        with self._lock_for(key):
            entry = self._entries.get(key)
            if entry is not None and self._clock() < entry.renew_at:
                return entry.token
            token, lifetime = _fetch(token_url, app_id, app_password)
            self._entries[key] = _Entry(token, self._clock() + lifetime - min(RENEW_BEFORE_SECONDS, lifetime / 2))
            return token

    def forget(self, *, token_url: str, app_id: str, app_password: str, token: str) -> None:
        """Drop ``token`` (the Connector refused it), unless another thread already replaced it."""
        key = self._key(token_url, app_id, app_password)
        with self._lock_for(key):
            entry = self._entries.get(key)
            if entry is not None and entry.token == token:
                del self._entries[key]


def _fetch(token_url: str, app_id: str, app_password: str) -> tuple[str, float]:
    form = {"grant_type": "client_credentials", "client_id": app_id, "client_secret": app_password, "scope": SCOPE}
    try:
        response = http_client().post(token_url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenError(f"token endpoint unreachable: {type(exc).__name__}", retryable=True) from None
    if response.status_code != 200:
        # AADSTS errors name the cause ("invalid_client"); never echo the request, which holds the password.
        detail = _error_code(response)
        raise TokenError(
            f"token endpoint answered HTTP {response.status_code}" + (f" ({detail})" if detail else ""),
            retryable=is_transient_status(response.status_code),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenError("token endpoint answered without an access_token", retryable=True)
    lifetime = body.get("expires_in")
    try:
        seconds = float(lifetime) if lifetime is not None else DEFAULT_LIFETIME_SECONDS
    except (TypeError, ValueError):
        seconds = DEFAULT_LIFETIME_SECONDS
    return token, seconds


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return error[:64] if isinstance(error, str) else ""


bot_tokens = ClientCredentialsTokens()
