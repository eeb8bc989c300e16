"""A fake Meta Graph API over real HTTP, and Meta's side of webhooks (signed with the app secret).

It serves what the WhatsApp and Messenger adapters call, checking what Meta checks:

- ``POST /{version}/{phone_number_id}/messages``: ``Authorization: Bearer`` with
  the access token, JSON with ``messaging_product: "whatsapp"``, a ``to`` of
  digits, a ``type`` and its object; interactive messages within Meta's limits
  (1 to 3 reply buttons titled with at most 20 characters and unique ids; a
  list of at most 10 rows titled with at most 24); a template with a name and
  a language. Answers the documented ``{"messages": [{"id": "wamid…"}]}``.
- ``GET /{version}/{media_id}``: the media's URL on this server (as Meta's CDN
  URL), which itself needs the Bearer token; ``GET /cdn/{media_id}`` the bytes;
  ``GET /public/{media_id}`` the same bytes without credentials (Messenger's links).
- ``GET /{version}/{waba_id}/message_templates``: the documented list.
- ``POST /{version}/me/messages``: Messenger's Send API with the page token:
  a ``recipient.id``, and ``message`` or ``sender_action``; a message with
  ``messaging_type: "MESSAGE_TAG"`` needs a ``tag``.

``refuse[to] = (http_status, code, message)`` refuses every send to that
recipient with a Graph error object; ``media[id] = (bytes, mime)`` are the files.
``signed(body)`` returns the headers Meta sends with a webhook body.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from channels_app.providers.meta.signature import sign
from tests.support import LocalHTTPServer
from tests.support import RecordedRequest as Recorded

FIXTURES = Path(__file__).resolve().parents[3] / "channels_app" / "providers" / "meta" / "fixtures"
VERSION = "v21.0"


def fixture(platform: str, name: str) -> dict[str, Any]:
    """A documented Meta payload from ``channels_app/providers/meta/fixtures/<platform>`` (its README says where from)."""
    return json.loads((FIXTURES / platform / name).read_text())


def graph_error(code: int, message: str, *, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code, "fbtrace_id": "Afake"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@dataclass
class FakeGraph(LocalHTTPServer):
    access_token: str = "EAAG-whatsapp-test-token"
    page_token: str = "EAAG-page-test-token"
    app_secret: str = "meta-app-secret"
    phone_number_id: str = "106540352242922"
    waba_id: str = "102290129340398"
    page_id: str = "1234567890123456"
    refuse: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # Mark-as-read (and typing indicator) requests Meta accepted.
    read_receipts: list[dict[str, Any]] = field(default_factory=list)
    # Messages Meta accepted: wamid/mid -> the request body.
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where Meta posts webhooks for what it accepted (our channel's webhook URL); None: it posts nothing.
    callback_url: str | None = None
    # HTTP statuses our server answered each callback with.
    callback_answers: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._listen_answering()

    def reset(self) -> None:
        with self._lock:
            self.refuse.clear()
            self.media.clear()
            self.requests.clear()
            self.messages.clear()
            self.read_receipts.clear()

    # --- Meta's side of a webhook ---------------------------------------------------------

    def signed(self, body: bytes, *, secret: str | None = None) -> dict[str, str]:
        return {"X-Hub-Signature-256": sign(body, secret or self.app_secret)}

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def record(self, message_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.messages[message_id] = body

    # --- Meta's callbacks for what it accepted (signed, on a thread of their own, as Meta sends them) ---

    def _post_callback(self, payload: dict[str, Any]) -> None:
        assert self.callback_url
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **self.signed(body)}
        answer = httpx.post(self.callback_url, content=body, headers=headers, timeout=30)
        with self._lock:
            self.callback_answers.append(answer.status_code)

    def _whatsapp_statuses(self, wamid: str, to: str) -> None:
        for name in ("status_sent.json", "status_delivered.json"):
            payload = fixture("whatsapp", name)
            value = payload["entry"][0]["changes"][0]["value"]
            value["metadata"]["phone_number_id"] = self.phone_number_id
            value["statuses"][0].update(id=wamid, recipient_id=to, timestamp=str(int(time.time())))
            self._post_callback(payload)

    def _messenger_delivery(self, psid: str) -> None:
        payload = fixture("messenger", "delivery.json")
        payload["entry"][0]["id"] = self.page_id
        event = payload["entry"][0]["messaging"][0]
        event["sender"]["id"], event["recipient"]["id"] = psid, self.page_id
        # Meta's clock, a moment after it delivered: every earlier message to this person is delivered.
        event["delivery"] = {"watermark": int(time.time() * 1000) + 1000}
        self._post_callback(payload)

    # --- the API --------------------------------------------------------------------------

    def _answer(self, req: Recorded) -> tuple[int, Any, str]:
        with self._lock:
            self.requests.append(req)
        path = req.path.split("?", 1)[0]
        auth = req.headers.get("authorization")
        if path.startswith("/public/"):
            # Messenger's attachment links: Meta's CDN, no credentials.
            found = self.media.get(path.removeprefix("/public/"))
            return (200, found[0], found[1]) if found else (404, b"", "text/plain")
        if path.startswith("/cdn/"):
            if auth != f"Bearer {self.access_token}":
                return 401, graph_error(190, "Invalid OAuth access token"), "application/json"
            found = self.media.get(path.removeprefix("/cdn/"))
            return (200, found[0], found[1]) if found else (404, b"", "text/plain")
        if auth not in (f"Bearer {self.access_token}", f"Bearer {self.page_token}"):
            return 401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"), "application/json"
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != VERSION:
            return 400, graph_error(2500, "Unknown path components"), "application/json"
        if req.method == "GET" and len(parts) == 2:
            return self._media_url(parts[1])
        if req.method == "GET" and parts[1:] == [self.waba_id, "message_templates"]:
            if auth != f"Bearer {self.access_token}":
                return 403, graph_error(200, "Permissions error"), "application/json"
            return 200, fixture("whatsapp", "message_templates_response.json"), "application/json"
        if req.method == "POST" and parts[1:] == [self.phone_number_id, "messages"]:
            if auth != f"Bearer {self.access_token}":
                return 401, graph_error(190, "Invalid OAuth access token"), "application/json"
            return self._json_send(req, self._whatsapp_send)
        if req.method == "POST" and parts[1:] == ["me", "messages"]:
            if auth != f"Bearer {self.page_token}":
                return 401, graph_error(190, "Invalid OAuth access token"), "application/json"
            return self._json_send(req, self._messenger_send)
        return 400, graph_error(100, "Unsupported request"), "application/json"

    def _json_send(self, req: Recorded, route: Any) -> tuple[int, Any, str]:
        if not req.headers.get("content-type", "").startswith("application/json"):
            return 400, graph_error(100, "Invalid parameter"), "application/json"
        try:
            body = json.loads(req.body)
        except ValueError:
            return 400, graph_error(100, "Invalid JSON"), "application/json"
        status, answer = route(body)
        return status, answer, "application/json"

    def _media_url(self, media_id: str) -> tuple[int, Any, str]:
        if media_id not in self.media:
            return 404, graph_error(100, "Unsupported get request. Object does not exist"), "application/json"
        answer = fixture("whatsapp", "media_url_response.json")
        data, mime = self.media[media_id]
        answer.update(id=media_id, url=f"{self.url}/cdn/{media_id}", mime_type=mime, file_size=len(data))
        return 200, answer, "application/json"

    def _whatsapp_send(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("messaging_product") != "whatsapp":
            return 400, graph_error(100, "The parameter messaging_product is required.")
        if body.get("status") == "read":
            # Mark as read (and show the typing indicator): a message of ours to mark, only read-receipt fields.
            indicator = body.get("typing_indicator")
            if set(body) - {"messaging_product", "status", "message_id", "typing_indicator"} or indicator not in (
                None,
                {"type": "text"},
            ):
                return 400, graph_error(100, "Invalid parameter")
            if not str(body.get("message_id") or "").startswith("wamid."):
                return 400, graph_error(100, "Invalid message_id")
            with self._lock:
                self.read_receipts.append(body)
            return 200, {"success": True}
        to = body.get("to")
        if not isinstance(to, str) or not re.fullmatch(r"\d{7,15}", to):
            return 400, graph_error(131009, "Parameter value is not valid")
        refused = self.refuse.get(to)
        if refused is not None:
            status, code, message = refused
            return status, graph_error(code, message)
        problem = _whatsapp_problem(body)
        if problem:
            return 400, graph_error(131009, problem)
        wamid = f"wamid.FAKE{next(self._ids):08d}"
        self.record(wamid, body)
        if self.callback_url:
            threading.Thread(target=self._whatsapp_statuses, args=(wamid, to), daemon=True).start()
        answer = fixture("whatsapp", "send_response.json")
        answer["contacts"] = [{"input": to, "wa_id": to}]
        answer["messages"] = [{"id": wamid}]
        return 200, answer

    def _messenger_send(self, body: dict[str, Any]) -> tuple[int, Any]:
        recipient = body.get("recipient")
        psid = recipient.get("id") if isinstance(recipient, dict) else None
        if not isinstance(psid, str) or not psid:
            return 400, graph_error(100, "The parameter recipient is required")
        refused = self.refuse.get(psid)
        if refused is not None:
            status, code, message = refused
            return status, graph_error(code, message)
        if "sender_action" in body:
            if body["sender_action"] not in ("typing_on", "typing_off", "mark_seen") or "message" in body:
                return 400, graph_error(100, "Invalid sender_action")
            with self._lock:
                self.messages[f"action-{next(self._ids)}"] = body
            return 200, {"recipient_id": psid}
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return 400, graph_error(100, "The parameter message is required")
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return 400, graph_error(100, "Invalid messaging_type")
        if body["messaging_type"] == "MESSAGE_TAG" and not body.get("tag"):
            return 400, graph_error(100, "A tag is required for MESSAGE_TAG")
        if isinstance(message.get("text"), str) and len(message["text"]) > 2000:
            return 400, graph_error(100, "Message text is longer than 2000 characters")
        if len(message.get("quick_replies") or []) > 13:
            return 400, graph_error(100, "At most 13 quick replies")
        mid = f"m_FAKE{next(self._ids):08d}"
        self.record(mid, body)
        if self.callback_url:
            threading.Thread(target=self._messenger_delivery, args=(psid,), daemon=True).start()
        return 200, {"recipient_id": psid, "message_id": mid}


def _whatsapp_problem(body: dict[str, Any]) -> str:
    """What Meta would refuse in a WhatsApp message object; empty when it is valid."""
    kind = body.get("type")
    if kind not in ("text", "image", "video", "audio", "document", "location", "template", "interactive"):
        return f"unknown type {kind!r}"
    data = body.get(kind)
    if not isinstance(data, dict):
        return f"the '{kind}' object is required"
    if kind == "text":
        text = data.get("body")
        return "" if isinstance(text, str) and 0 < len(text) <= 4096 else "text.body must have 1 to 4096 characters"
    if kind in ("image", "video", "audio", "document"):
        if not (data.get("link") or data.get("id")):
            return "media needs a link or an id"
        return "audio takes no caption" if kind == "audio" and "caption" in data else ""
    if kind == "location":
        return "" if "latitude" in data and "longitude" in data else "location needs latitude and longitude"
    if kind == "template":
        language = data.get("language")
        if not data.get("name") or not isinstance(language, dict) or not language.get("code"):
            return "a template needs a name and a language code"
        return ""
    interactive_type = data.get("type")
    body_text = (data.get("body") or {}).get("text")
    if not isinstance(body_text, str) or not body_text:
        return "interactive.body.text is required"
    action = data.get("action") or {}
    if interactive_type == "button":
        buttons = action.get("buttons") or []
        ids = [b.get("reply", {}).get("id") for b in buttons]
        if not 1 <= len(buttons) <= 3 or len(set(ids)) != len(ids) or len(body_text) > 1024:
            return "1 to 3 buttons with unique ids and a body of at most 1024 characters"
        if any(not 1 <= len(b.get("reply", {}).get("title") or "") <= 20 for b in buttons):
            return "a button title has 1 to 20 characters"
        return ""
    if interactive_type == "list":
        rows = [row for section in action.get("sections") or [] for row in section.get("rows") or []]
        if not 1 <= len(rows) <= 10 or not action.get("button") or len(action["button"]) > 20:
            return "a list has 1 to 10 rows and a button label of at most 20 characters"
        if any(not 1 <= len(row.get("title") or "") <= 24 for row in rows):
            return "a row title has 1 to 24 characters"
        return ""
    return f"unknown interactive type {interactive_type!r}"
