"""A fake Bot Framework over real HTTP: OpenID metadata and key set, the token endpoint, the Bot Connector.

It plays every Microsoft service the Teams adapter talks to, checking what they check:

- ``GET /openid``: the OpenID metadata document (the documented one, fixtures
  ``openid_configuration.json``) with ``jwks_uri`` pointing at ``/keys``;
- ``GET /keys``: the key set, our own RSA public keys (generated per fake with
  ``cryptography``, never a real key), each endorsed for ``msteams``;
- ``POST /token``: the identity platform's client-credentials grant; the form
  must carry ``grant_type=client_credentials``, the app's id and password and
  the Bot Framework scope, else ``401 invalid_client`` / ``400``;
- ``POST /v3/conversations/{id}/activities``: a token it issued (and has not
  revoked) as Bearer, a JSON ``message`` activity for that conversation with
  text or attachments; answers ``201 {"id"}``. ``next_answers`` scripts
  one-off failures ``(status, body, headers)``.

``token_for(**claims)`` signs an inbound token the way Bot Framework does, with
the fake's current key (or ``key=`` another one).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support import LocalHTTPServer
from tests.support import RecordedRequest as Recorded

FIXTURES = Path(__file__).resolve().parents[3] / "channels_app" / "providers" / "teams" / "fixtures"
APP_ID = "c9e8c047-2a74-40a2-b28a-b162d5f5327c"
APP_PASSWORD = "test-app-password-~not-real"
ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"


def fixture(name: str) -> dict[str, Any]:
    """A documented Bot Framework payload from the adapter's fixtures (SOURCES.md says where each comes from)."""
    return json.loads((FIXTURES / name).read_text())


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeBotFramework(LocalHTTPServer):
    app_id: str = APP_ID
    app_password: str = APP_PASSWORD
    token_lifetime: int = 3600
    # kid -> private key; the public halves are served at /keys.
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    endorsements: list[str] = field(default_factory=lambda: ["msteams"])
    next_answers: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    # Tokens issued by /token and not revoked.
    live_tokens: set[str] = field(default_factory=set)
    # Activities the Connector accepted: (conversation id, activity).
    activities: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # The ids it answered with, in the same order.
    activity_ids: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = {"key-1": new_rsa_key()}
        self._listen_answering()

    def reset(self) -> None:
        with self._lock:
            self.next_answers.clear()
            self.requests.clear()
            self.live_tokens.clear()
            self.activities.clear()
            self.activity_ids.clear()

    # --- URLs for a channel's config ---------------------------------------------------

    @property
    def metadata_url(self) -> str:
        return self.url + "/openid"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def service_url(self) -> str:
        """What a test's activities name as their serviceUrl: this fake's Connector."""
        return self.url + "/"

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path.split("?")[0] == path)

    def connector_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v3/")]

    # --- Bot Framework's side of an inbound activity -----------------------------------

    def token_for(
        self,
        *,
        kid: str = "key-1",
        key: rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
        audience: str | None = None,
        issuer: str = ISSUER,
        service_url: str | None = None,
        expires_in: int = 3600,
        not_before_in: int = -60,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience or self.app_id,
            "serviceUrl": service_url or self.service_url,
            "nbf": now + not_before_in,
            "iat": now + not_before_in,
            "exp": now + expires_in,
            **claims,
        }
        signing_key: Any = key or self.keys.get(kid)
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})

    # --- the services --------------------------------------------------------------------

    def _answer(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(req)
        path = req.path.split("?", 1)[0]
        if req.method == "GET" and path == "/openid":
            return 200, {**fixture("openid_configuration.json"), "jwks_uri": self.url + "/keys"}, {}
        if req.method == "GET" and path == "/keys":
            return 200, {"keys": [self._jwk(kid, key) for kid, key in list(self.keys.items())]}, {}
        if req.method == "POST" and path == "/token":
            return self._token(req)
        if req.method == "POST" and path.startswith("/v3/conversations/") and path.endswith("/activities"):
            return self._activity(req, unquote(path[len("/v3/conversations/") : -len("/activities")]))
        return 404, {"error": {"code": "NotFound", "message": "no such route"}}, {}

    def _jwk(self, kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        return {**jwk, "kid": kid, "use": "sig", "kty": "RSA", "endorsements": list(self.endorsements)}

    def _token(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        if not req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return 400, {"error": "invalid_request", "error_description": "AADSTS900144: form body expected"}, {}
        form = req.form()
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}, {}
        if form.get("scope") != SCOPE:
            return 400, {"error": "invalid_scope"}, {}
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.app_password:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}, {}
        token = f"bf-token-{uuid.uuid4().hex}"
        with self._lock:
            self.live_tokens.add(token)
        return (
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
            {},
        )

    def revoke_tokens(self) -> None:
        with self._lock:
            self.live_tokens.clear()

    def _activity(self, req: Recorded, conversation_id: str) -> tuple[int, Any, dict[str, str]]:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.live_tokens:
            return 401, {"message": "Authorization has been denied for this request."}, {}
        with self._lock:
            if self.next_answers:
                return self.next_answers.pop(0)
        if not req.headers.get("content-type", "").startswith("application/json"):
            return 415, {"error": {"code": "BadArgument", "message": "JSON expected"}}, {}
        try:
            activity = req.json()
        except ValueError:
            return 400, {"error": {"code": "BadSyntax", "message": "invalid JSON"}}, {}
        if not isinstance(activity, dict) or activity.get("type") != "message":
            return 400, {"error": {"code": "BadArgument", "message": "type must be message"}}, {}
        if (activity.get("conversation") or {}).get("id") != conversation_id:
            return 400, {"error": {"code": "BadArgument", "message": "conversation id does not match the URL"}}, {}
        if not activity.get("text") and not activity.get("attachments"):
            return 400, {"error": {"code": "BadArgument", "message": "Unknown activity type"}}, {}
        for attachment in activity.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                card = attachment.get("content") or {}
                if card.get("type") != "AdaptiveCard" or not card.get("version"):
                    return 400, {"error": {"code": "BadArgument", "message": "invalid Adaptive Card"}}, {}
        activity_id = f"1:{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        with self._lock:
            self.activities.append((conversation_id, activity))
            self.activity_ids.append(activity_id)
        return 201, {"id": activity_id}, {}
