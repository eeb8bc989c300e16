"""Bot Framework's inbound authentication: the ``Authorization: Bearer <JWT>`` on every activity.

As "Authenticate requests from the Bot Connector service to your bot"
(learn.microsoft.com, bot-framework-rest-connector-authentication) lays it
out: the token is RS256, signed by a key from the JSON Web Key Set that the
OpenID metadata document (``openid_metadata_url``, default Bot Framework's)
names as its ``jwks_uri``; its issuer is ``https://api.botframework.com``, its
audience the bot's app id, it is within its validity (5 minutes of leeway for
clock skew, as the SDKs allow), and its ``serviceUrl`` claim equals the
activity's ``serviceUrl`` (so a token for one service cannot vouch for a URL we
would then send our own credentials to). A key may carry ``endorsements``: the
channel ids it may sign for; the activity's ``channelId`` must be one of them.

PyJWT does the token (signature, algorithm, claims). The key set is fetched
here over httpx rather than with ``jwt.PyJWKClient``: its refresh on an unknown
``kid`` is unbounded (every token with a made-up kid would be a fetch from the
metadata server), where ours refetches at most once per ``MIN_REFRESH_SECONDS``
per metadata URL, and keeps a fetched set for ``KEYS_TTL_SECONDS`` (the
document advises a daily refresh).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from channels_app.http_client import http_client

logger = logging.getLogger(__name__)

DEFAULT_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
ISSUER = "https://api.botframework.com"
ALGORITHMS = ["RS256"]
LEEWAY_SECONDS = 300
KEYS_TTL_SECONDS = 24 * 3600
# The most often an unknown kid may send us back to the metadata server (per metadata URL).
MIN_REFRESH_SECONDS = 60.0
# A token larger than this is no Bot Framework token (they are about 1-2 KB); refused before parsing.
MAX_TOKEN_LENGTH = 16_384


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    # kid -> the channel ids the key may sign for (absent: no restriction given).
    endorsements: dict[str, list[str]] = field(default_factory=dict)
    fetched_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class SigningKeys:
    """The signing keys of each OpenID metadata URL, fetched on first use and refreshed, boundedly, on an unknown kid."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, min_refresh_seconds: float = MIN_REFRESH_SECONDS) -> None:
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()

    def _set_for(self, metadata_url: str) -> _KeySet:
        with self._lock:
            return self._sets.setdefault(metadata_url, _KeySet())

    def key(self, metadata_url: str, kid: str) -> tuple[jwt.PyJWK, list[str] | None] | None:
        """The key ``kid`` and its endorsements, or None when the metadata's key set has no such key."""
        keyset = self._set_for(metadata_url)
        with keyset.lock:
            now = self._clock()
            stale = keyset.fetched_at is None or now - keyset.fetched_at > KEYS_TTL_SECONDS
            unknown = kid not in keyset.keys
            may_refresh = keyset.fetched_at is None or now - keyset.fetched_at >= self._min_refresh
            if stale or (unknown and may_refresh):
                self._refresh(metadata_url, keyset, now)
            found = keyset.keys.get(kid)
            return (found, keyset.endorsements.get(kid)) if found is not None else None

    def _refresh(self, metadata_url: str, keyset: _KeySet, now: float) -> None:
        # Counted as a fetch even when it fails: a metadata server that is down is not asked again at once.
        keyset.fetched_at = now
        try:
            metadata = _get_json(metadata_url)
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise ValueError("the OpenID metadata has no jwks_uri")
            document = _get_json(jwks_uri)
            entries = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(entries, list):
                raise ValueError("the key set has no 'keys' list")
        except (httpx.HTTPError, ValueError) as exc:
            # The keys we had stay: a passing outage must not lock every conversation out.
            logger.warning("teams: could not refresh signing keys from %s: %s", metadata_url, exc)
            return
        keys: dict[str, jwt.PyJWK] = {}
        endorsements: dict[str, list[str]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                # Only RSA keys serve RS256; anything else in the set is skipped.
                key = jwt.PyJWK(entry, algorithm="RS256")
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            keys[entry["kid"]] = key
            if isinstance(entry.get("endorsements"), list):
                endorsements[entry["kid"]] = [e for e in entry["endorsements"] if isinstance(e, str)]
        keyset.keys, keyset.endorsements = keys, endorsements


def _get_json(url: str) -> Any:
    response = http_client().get(url, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code} from {url}")
    return response.json()


signing_keys = SigningKeys()


def verify_bot_framework_token(
    authorization: str | None,
    *,
    app_id: str,
    metadata_url: str,
    service_url: str | None,
    channel_id: str | None,
    keys: SigningKeys | None = None,
) -> bool:
    """True when ``authorization`` is ``Bearer <JWT>`` that Bot Framework issued to ``app_id`` for this activity.

    Every way to fail is a plain False: the caller answers 403 and stores nothing.
    ``service_url``/``channel_id`` are the activity's (None when the body carries
    none: the token alone is checked, and the parser refuses the body).
    """
    if not authorization or not app_id:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return False
    kid = header.get("kid")
    if header.get("alg") not in ALGORITHMS or not isinstance(kid, str) or not kid:
        return False
    found = (keys or signing_keys).key(metadata_url, kid)
    if found is None:
        return False
    key, endorsed = found
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=ALGORITHMS,
            audience=app_id,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.InvalidTokenError:
        return False
    if service_url is not None and _normal_url(claims.get("serviceUrl")) != _normal_url(service_url):
        return False
    if endorsed is not None and channel_id is not None and channel_id not in endorsed:
        return False
    return True


def _normal_url(value: Any) -> str | None:
    # Bot Framework writes the same service URL with and without its trailing slash.
    return value.rstrip("/") if isinstance(value, str) and value else None
