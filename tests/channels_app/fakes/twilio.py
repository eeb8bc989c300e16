"""A fake Twilio: a real HTTP server on 127.0.0.1 speaking the parts of Twilio's API the adapter uses.

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: Basic auth
  (account SID : auth token, else 401 code 20003), the account in the path
  must be the caller's, form fields checked as Twilio checks them (``To``;
  ``From`` or ``MessagingServiceSid``, 21603; ``Body``, ``MediaUrl`` or
  ``ContentSid``, 21619; ``FallbackFrom`` only with a service, 21666; a
  ``ContentSid`` it made). Answers 201 with the Message resource, shaped like
  ``fixtures/twilio/message_created.json``.
- ``POST /v1/Content``: the Content API (JSON body, Basic auth), answers 201
  with an ``HX…`` sid.
- ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MM}/Media/{ME}``: media,
  behind Basic auth; redirects to ``media_redirect`` (another server: a CDN)
  when set, as Twilio does, else answers the bytes itself.

``script`` holds answers for the next message creations: a status and a JSON
body (and headers), or ``DROP`` to take the message and close the connection
without answering (a lost response); ``content_script`` likewise for the
Content API. Every request is recorded.

Like Twilio, it decides how an RCS message goes: a Messaging Service whose
pool has an RCS sender sends over RCS to numbers in ``rcs_capable`` and falls
back to SMS from ``pool_number`` for the others, unless ``To`` is
``rcs:``-prefixed (no fallback). ``status_callbacks(sid)`` gives the callback
forms Twilio would post for the message, ``From`` saying which way it went.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support import LocalHTTPServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio"
DROP = "drop"


def fixture(name: str) -> dict[str, Any]:
    """A fixture file's payload (``form`` or ``body``)."""
    data = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(data.get("form") or data.get("body"))


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An error answer in the REST API's shape (fixtures/twilio/error_21211.json)."""
    return (
        status,
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        {},
    )


@dataclass
class TwilioRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading (a media fetch over its size limit) resets the connection: expected.
        pass


@dataclass
class FakeTwilio(LocalHTTPServer):
    account_sid: str
    auth_token: str
    rcs_sender: str = "rcs:brand_xyz123_agent"
    pool_number: str = "+15017250604"
    rcs_capable: set[str] = field(default_factory=set)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    media_redirect: str = ""
    script: list[Any] = field(default_factory=list)
    content_script: list[Any] = field(default_factory=list)
    requests: list[TwilioRequest] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        outer = self
        self._lock = threading.Lock()

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes on a kept-alive connection:
                # without this, Nagle holds the body for the client's delayed ACK (40 ms).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = TwilioRequest(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with outer._lock:
                    outer.requests.append(req)
                    answer = outer._answer(req)
                if answer == DROP:
                    self.close_connection = True
                    return
                status, body, headers = answer
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(_Handler, server_class=_QuietServer)

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.content_script.clear()
            self.requests.clear()
            self.messages.clear()
            self.templates.clear()
            self.media.clear()
            self.rcs_capable.clear()
            self.media_redirect = ""

    # --- what was sent ---

    def message_requests(self) -> list[TwilioRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Messages.json")]

    def content_requests(self) -> list[TwilioRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/Content"]

    def media_url(self, message_sid: str, media_sid: str) -> str:
        return f"{self.url}/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"

    # --- answers ---

    def _authorized(self, req: TwilioRequest) -> bool:
        return req.basic_auth() == (self.account_sid, self.auth_token)

    def _answer(self, req: TwilioRequest) -> Any:
        path = urlsplit(req.path).path
        if not self._authorized(req):
            return twilio_error(401, 20003, "Authenticate")
        parts = path.strip("/").split("/")
        if req.method == "POST" and path == "/v1/Content":
            return self.content_script.pop(0) if self.content_script else self._create_content(req)
        if len(parts) >= 3 and parts[:2] == ["2010-04-01", "Accounts"] and parts[2] != self.account_sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        if req.method == "POST" and parts[3:] == ["Messages.json"]:
            if self.script:
                scripted = self.script.pop(0)
                if scripted == DROP:
                    self._create_message(req)
                    return DROP
                return scripted
            return self._create_message(req)
        if req.method == "GET" and len(parts) == 7 and parts[3] == "Messages" and parts[5] == "Media":
            return self._media(parts[6])
        return twilio_error(404, 20404, "The requested resource was not found")

    def _media(self, media_sid: str) -> Any:
        if media_sid not in self.media:
            return twilio_error(404, 20404, "The requested resource was not found")
        if self.media_redirect:
            return 307, b"", {"Location": f"{self.media_redirect}/{media_sid}", "Content-Type": "text/plain"}
        data, content_type = self.media[media_sid]
        return 200, data, {"Content-Type": content_type}

    def _create_content(self, req: TwilioRequest) -> Any:
        if not req.headers.get("Content-Type", "").startswith("application/json"):
            return twilio_error(400, 20001, "Content-Type must be application/json")
        definition = req.json()
        if not definition.get("types") or not definition.get("language"):
            return twilio_error(400, 20001, "types and language are required")
        sid = "HX" + secrets.token_hex(16)
        body = fixture("content_created.json")
        body.update(
            sid=sid,
            account_sid=self.account_sid,
            friendly_name=definition.get("friendly_name", ""),
            types=definition["types"],
            url=f"{self.url}/v1/Content/{sid}",
        )
        self.templates[sid] = definition
        return 201, body, {}

    def _create_message(self, req: TwilioRequest) -> Any:
        form = {k: v[0] if len(v) == 1 else v for k, v in req.form.items()}
        to = form.get("To") or ""
        service = form.get("MessagingServiceSid") or ""
        sender = form.get("From") or ""
        media = req.form.get("MediaUrl", [])
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message.")
        if not form.get("Body") and not media and not form.get("ContentSid"):
            return twilio_error(400, 21619, "A text message body, media URL or Content SID is required.")
        if form.get("FallbackFrom") and not service:
            return twilio_error(400, 21666, "'FallbackFrom' requires MessagingServiceSid")
        if form.get("ContentSid") and form["ContentSid"] not in self.templates:
            return twilio_error(404, 20404, "The requested resource was not found")
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        body = fixture("message_created.json")
        body.update(
            sid=sid,
            account_sid=self.account_sid,
            to=to,
            body=form.get("Body", ""),
            num_media=str(len(media)),
            messaging_service_sid=service or None,
            # With a service and no From, Twilio picks the sender later: "accepted", from null.
            status="accepted" if service and not sender else "queued",
            uri=f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        )
        body["from"] = sender or None
        body["subresource_uris"] = {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"}
        self.messages[sid] = {"form": form, "route": self._route(to, service, sender, form.get("FallbackFrom") or "")}
        return 201, body, {}

    def _route(self, to: str, service: str, sender: str, fallback_from: str) -> tuple[str, str]:
        """How Twilio carries the message: (``rcs`` or ``sms``, the From it reports)."""
        if to.startswith("rcs:"):
            return "rcs", sender or self.rcs_sender
        if sender.startswith("rcs:"):
            return "rcs", sender
        if service and to in self.rcs_capable:
            return "rcs", self.rcs_sender
        return "sms", sender or fallback_from or self.pool_number

    def status_callbacks(self, sid: str, *, final: str = "delivered") -> list[dict[str, str]]:
        """The status callback forms Twilio posts for message ``sid``, in order (queued, sent, ``final``)."""
        message = self.messages[sid]
        way, sender = message["route"]
        to = message["form"]["To"]
        forms = []
        for status in ("queued", "sent", final):
            form = {
                "AccountSid": self.account_sid,
                "From": sender,
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "ApiVersion": "2010-04-01",
                "To": to,
            }
            if message["form"].get("MessagingServiceSid"):
                form["MessagingServiceSid"] = message["form"]["MessagingServiceSid"]
            if way == "rcs":
                form["ChannelPrefix"] = "rcs"
                form["To"] = to if to.startswith("rcs:") else "rcs:" + to
            forms.append(form)
        return forms


# --- Twilio's side of a webhook -----------------------------------------------------------


def twilio_signature(url: str, params: dict[str, Any], auth_token: str) -> str:
    """``X-Twilio-Signature`` computed as Twilio documents it, independently of the SDK.

    https://www.twilio.com/docs/usage/security#validating-requests: the full
    URL, then every POST field's name and value, sorted by name (case
    sensitive), without delimiters; HMAC-SHA1 keyed by the auth token; Base64.
    """
    data = url
    for name in sorted(params):
        values = params[name] if isinstance(params[name], list) else [params[name]]
        for value in sorted(values):
            data += name + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def post_as_twilio(
    client: Any,
    path: str,
    form: dict[str, Any],
    *,
    auth_token: str | None,
    signed_url: str | None = None,
    signature: str | None = None,
    **extra: Any,
) -> Any:
    """POST ``form`` to ``path`` the way Twilio does, signed for ``signed_url`` (default: ``PUBLIC_BASE_URL`` + path).

    ``auth_token=None`` sends no signature; ``signature`` sends that one instead.
    """
    from django.conf import settings

    headers = {}
    if signature is not None:
        headers["HTTP_X_TWILIO_SIGNATURE"] = signature
    elif auth_token is not None:
        headers["HTTP_X_TWILIO_SIGNATURE"] = twilio_signature(signed_url or settings.PUBLIC_BASE_URL + path, form, auth_token)
    return client.post(
        path, data=urlencode(form, doseq=True), content_type="application/x-www-form-urlencoded", **headers, **extra
    )
