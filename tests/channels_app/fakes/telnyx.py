"""A fake Telnyx API over real HTTP, and Telnyx's side of webhooks (signed events).

It serves what the adapter calls, checking what Telnyx checks:

- ``POST /v2/messages``: Bearer API key, a JSON body with ``to`` (E.164),
  ``from`` or ``messaging_profile_id``, and ``text`` or ``media_urls``;
  answers the documented message object (``data.id``, ``data.to[0].status``
  "queued") or Telnyx's ``{"errors": [{code, title, detail}]}``.
- ``POST /v2/messages/rcs``: ``agent_id``, ``messaging_profile_id``, ``to``
  and an ``agent_message`` whose ``content_message`` holds exactly one of
  ``text``, ``content_info``, ``rich_card`` (Google's one-of), suggestions
  labelled with at most 25 characters, a carousel of 2 to 10 cards.
- ``GET /v2/messaging/rcs/capabilities/{agent_id}/{number}``: the device's
  features from ``rcs_features`` (null features: no RCS, as Telnyx answers).
- ``Idempotency-Key`` as Telnyx's idempotency page describes it: a success is
  stored per key and path; the same key and byte-identical body replays it
  (no second message), a different body is a 422.

Failures are scripted: ``refuse[number] = (http_status, code, title)`` refuses
every send to that number; ``next_answers`` is a queue of one-off answers
(``(status, code, title, headers)``); ``lose_next_answer`` accepts the next
message and closes the connection without answering (a lost answer).

``signing_key`` plays Telnyx's account key pair: ``signed(body)`` returns the
headers Telnyx would send with that webhook body.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from tests.support import LocalHTTPServer
from tests.support import RecordedRequest as Recorded

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telnyx"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# A fixed seed: the same test key pair on every run (never a real Telnyx key).
TEST_SIGNING_SEED = bytes(range(32))


def fixture(name: str) -> dict[str, Any]:
    """A documented Telnyx payload from ``fixtures/telnyx`` (SOURCES.md says where each comes from)."""
    return json.loads((FIXTURES / name).read_text())


_SEND_ANSWER = fixture("send_message_response.json")
_CAPABILITIES = fixture("rcs_capabilities.json")


def _error(code: str, title: str, detail: str = "", pointer: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "title": title, "detail": detail or title}
    if pointer:
        error["source"] = {"pointer": pointer}
    error["meta"] = {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}
    return {"errors": [error]}


@dataclass
class FakeTelnyx(LocalHTTPServer):
    api_key: str = "KEY0123456789TEST"
    signing_key: SigningKey = field(default_factory=lambda: SigningKey(TEST_SIGNING_SEED))
    # number -> features; a number not listed has no RCS (Telnyx answers null features).
    rcs_features: dict[str, list[str] | None] = field(default_factory=dict)
    capabilities_status: int = 200
    refuse: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    next_answers: list[tuple[int, str, str, dict[str, str]]] = field(default_factory=list)
    lose_next_answer: bool = False
    requests: list[Recorded] = field(default_factory=list)
    # Messages Telnyx accepted, by id (a replayed idempotent request adds none).
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    _idempotent: dict[tuple[str, str], tuple[bytes, int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._listen_answering()

    def reset(self) -> None:
        with self._lock:
            self.rcs_features.clear()
            self.capabilities_status = 200
            self.refuse.clear()
            self.next_answers.clear()
            self.lose_next_answer = False
            self.requests.clear()
            self.messages.clear()
            self._idempotent.clear()

    @property
    def public_key(self) -> str:
        """The base64 public key a channel's config ``public_key`` holds."""
        return base64.b64encode(bytes(self.signing_key.verify_key)).decode()

    # --- Telnyx's side of a webhook -------------------------------------------------------

    def signed(self, body: bytes, *, timestamp: int | None = None, key: SigningKey | None = None) -> dict[str, str]:
        """The headers Telnyx sends with ``body``: Ed25519 over ``{timestamp}|{body}``, base64."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = (key or self.signing_key).sign(stamp.encode() + b"|" + body).signature
        return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": stamp}

    # --- the API --------------------------------------------------------------------------

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def _answer(self, req: Recorded) -> tuple[int, Any, dict[str, str]] | None:
        with self._lock:
            self.requests.append(req)
        if req.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error("10009", "Authentication failed", "The API key is invalid."), {}
        path = req.path.split("?", 1)[0]
        if req.method == "GET" and path.startswith("/v2/messaging/rcs/capabilities/"):
            return self._capabilities(path)
        routes: dict[str, Callable[[dict[str, Any]], tuple[int, Any] | None]] = {
            "/v2/messages": self._send_message,
            "/v2/messages/rcs": self._send_rcs,
        }
        route = routes.get(path)
        if req.method != "POST" or route is None:
            return 404, _error("10005", "Resource not found"), {}
        if not req.headers.get("content-type", "").startswith("application/json"):
            return 415, _error("10014", "Unsupported Media Type"), {}
        try:
            body = json.loads(req.body)
        except ValueError:
            return 400, _error("10023", "Invalid JSON"), {}
        if not isinstance(body, dict):
            return 400, _error("10015", "Bad Request", "The body must be a JSON object."), {}
        key = req.headers.get("idempotency-key")
        with self._lock:
            if key is not None:
                if not re.fullmatch(r"[A-Za-z0-9_:-]{1,255}", key):
                    return 422, _error("10015", "Bad Request", "Invalid Idempotency-Key."), {}
                stored = self._idempotent.get((key, path))
                if stored is not None:
                    if stored[0] != req.body:
                        return 422, _error("10015", "Bad Request", "Idempotency-Key reused with another body."), {}
                    return stored[1], stored[2], {"Idempotent-Replayed": "true"}
            if self.next_answers:
                status, code, title, headers = self.next_answers.pop(0)
                return status, _error(code, title), headers
            refused = self.refuse.get(str(body.get("to")))
            if refused is not None:
                status, code, title = refused
                return status, _error(code, title, pointer="/to"), {}
            status, answer = route(body)
            if 200 <= status < 300:
                self.messages[answer["data"]["id"]] = answer["data"]
                if key is not None:
                    # Only successes are replayed (Telnyx's idempotency page).
                    self._idempotent[(key, path)] = (req.body, status, answer)
                if self.lose_next_answer:
                    self.lose_next_answer = False
                    return None
            return status, answer, {}

    def _new_id(self) -> str:
        return str(uuid.UUID(int=next(self._ids)))

    def _send_message(self, body: dict[str, Any]) -> tuple[int, Any]:
        to = body.get("to")
        if not to:
            return 422, _error("10004", "Missing required parameter", pointer="/to")
        if not isinstance(to, str) or not E164.match(to):
            return 400, _error("40310", "Invalid 'to' address", pointer="/to")
        if not body.get("from") and not body.get("messaging_profile_id"):
            return 422, _error("10004", "Missing required parameter", "'from' or 'messaging_profile_id' is required.", "/from")
        text, media = body.get("text"), body.get("media_urls")
        if media is not None and (not isinstance(media, list) or not all(isinstance(u, str) and u for u in media)):
            return 422, _error("10015", "Bad Request", "'media_urls' must be a list of URLs.", "/media_urls")
        if not (isinstance(text, str) and text) and not media:
            return 422, _error("10004", "Missing required parameter", "'text' or 'media_urls' is required.", "/text")
        # The documented answer, for this message.
        message = copy.deepcopy(_SEND_ANSWER["data"])
        message.update(
            id=self._new_id(),
            type="MMS" if media else "SMS",
            text=text or "",
            media=[{"url": u, "content_type": None, "sha256": None, "size": None} for u in media or []],
            webhook_url=body.get("webhook_url"),
        )
        if body.get("messaging_profile_id"):
            message["messaging_profile_id"] = body["messaging_profile_id"]
        message["from"] = {**message["from"], "phone_number": body.get("from") or message["from"]["phone_number"]}
        message["to"] = [{**message["to"][0], "phone_number": to, "status": "queued"}]
        return 200, {"data": message}

    def _send_rcs(self, body: dict[str, Any]) -> tuple[int, Any]:
        for name in ("agent_id", "messaging_profile_id", "to", "agent_message"):
            if not body.get(name):
                return 422, _error("10004", "Missing required parameter", pointer=f"/{name}")
        if not E164.match(str(body["to"])):
            return 400, _error("40310", "Invalid 'to' address", pointer="/to")
        problem = _rcs_problem(body["agent_message"])
        if problem:
            return 422, _error("10015", "Bad Request", problem, "/agent_message")
        message = {
            "record_type": "message",
            "direction": "outbound",
            "id": self._new_id(),
            "type": "RCS",
            "messaging_profile_id": body["messaging_profile_id"],
            "from": {"agent_id": body["agent_id"], "carrier": "Telnyx", "agent_name": "Test Agent"},
            "to": [{"phone_number": body["to"], "status": "queued", "carrier": "Verizon Wireless", "line_type": "Wireless"}],
            "body": body["agent_message"],
        }
        return 200, {"data": message}

    def _capabilities(self, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/")
        agent_id, number = parts[-2], parts[-1].replace("%2B", "+")
        if self.capabilities_status != 200:
            return self.capabilities_status, _error("10007", "Unexpected error"), {}
        features = self.rcs_features.get(number)
        data = {**copy.deepcopy(_CAPABILITIES["data"]), "phone_number": number, "agent_id": agent_id, "features": features}
        if not features:
            data["status"] = "RCS is disabled or agent is not provisioned for the carrier"
        return 200, {"data": data}, {}


def _rcs_problem(agent_message: Any) -> str:
    """What Telnyx (Google's RBM schema) would refuse in an agent message; empty when it is valid."""
    if not isinstance(agent_message, dict) or not isinstance(agent_message.get("content_message"), dict):
        return "agent_message.content_message is required"
    content = agent_message["content_message"]
    kinds = [k for k in ("text", "content_info", "rich_card") if k in content]
    if len(kinds) != 1:
        return f"content_message must hold exactly one of text, content_info, rich_card (got {kinds})"
    suggestions = list(content.get("suggestions") or [])
    if len(suggestions) > 11:
        return "at most 11 suggestions"
    card = content.get("rich_card")
    if card is not None:
        if "standalone_card" in card:
            cards = [card["standalone_card"]["card_content"]]
            for name in ("card_orientation", "thumbnail_image_alignment"):
                if name not in card["standalone_card"]:
                    return f"standalone_card.{name} is required"
        elif "carousel_card" in card:
            cards = card["carousel_card"].get("card_contents") or []
            if not 2 <= len(cards) <= 10 or "card_width" not in card["carousel_card"]:
                return "a carousel needs 2 to 10 cards and a card_width"
        else:
            return "rich_card needs standalone_card or carousel_card"
        for c in cards:
            if not any(k in c for k in ("title", "description", "media")):
                return "a card needs a title, a description or media"
            suggestions.extend(c.get("suggestions") or [])
    for s in suggestions:
        entry = s.get("reply") or s.get("action") or {}
        label = entry.get("text")
        if not isinstance(label, str) or not 1 <= len(label) <= 25:
            return "a suggestion's text must have 1 to 25 characters"
        try:
            base64.b64decode(entry.get("postback_data", ""), validate=True)
        except ValueError:
            return "postback_data must be base64"
        action = s.get("action")
        if action is not None and "open_url_action" in action:
            for name in ("url", "application", "webview_view_mode"):
                if name not in action["open_url_action"]:
                    return f"open_url_action.{name} is required"
    return ""
