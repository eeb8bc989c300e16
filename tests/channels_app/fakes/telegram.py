"""A fake Telegram Bot API over real HTTP, checking what Telegram checks.

- ``POST /bot<token>/<method>`` with a JSON body; a token other than
  ``token`` is Telegram's 401 ``Unauthorized``.
- ``sendMessage``: ``chat_id`` and a ``text`` of 1 to 4096 characters; a
  ``reply_markup.inline_keyboard`` whose buttons each have a ``text`` and
  exactly one of ``url`` or ``callback_data`` (1 to 64 bytes), at most 100.
- ``sendPhoto``/``sendDocument``/``sendVoice``/``sendAudio``/``sendVideo``:
  ``chat_id`` and the file field (here a URL), a ``caption`` of at most 1024.
- ``sendLocation``: ``chat_id``, numeric ``latitude`` and ``longitude`` in range.
- ``getFile``: the ``File`` of a file registered in ``files`` (its path), and
  ``GET /file/bot<token>/<file_path>`` serves its bytes.
- ``setWebhook`` (an HTTPS ``url``, a ``secret_token`` of 1-256 of
  ``A-Za-z0-9_-``, ``allowed_updates`` a list of update kinds),
  ``getWebhookInfo`` (what was set), ``deleteWebhook``.

Each accepted send gets the next ``message_id`` and is kept in ``sent``.
Failures are scripted: ``blocked`` chats answer 403 "bot was blocked by the
user"; ``next_errors`` is a queue of one-off ``(http status, error body)``
answers (Telegram's ``{"ok": false, …}``).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import LocalHTTPServer
from tests.support import RecordedRequest as Recorded

FIXTURES = Path(__file__).resolve().parents[3] / "channels_app" / "providers" / "telegram" / "fixtures"
TEST_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_UPDATE_KINDS = frozenset(
    {"message", "edited_message", "channel_post", "edited_channel_post", "callback_query", "inline_query", "my_chat_member"}
)
_MEDIA_FIELDS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendAudio": "audio",
    "sendVideo": "video",
}


def fixture(name: str) -> dict[str, Any]:
    """A documented payload from the adapter's ``fixtures`` (SOURCES.md says where each comes from)."""
    return json.loads((FIXTURES / name).read_text())


def error(code: int, description: str, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


@dataclass
class FakeTelegram(LocalHTTPServer):
    token: str = TEST_TOKEN
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file_id -> (file_path, bytes)
    blocked: set[str] = field(default_factory=set)
    next_errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)  # (method, body, message_id)
    webhook: dict[str, Any] = field(default_factory=dict)
    chat_actions: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(2001))

    def __post_init__(self) -> None:
        self._listen_answering()

    def reset(self) -> None:
        with self._lock:
            self.files.clear()
            self.blocked.clear()
            self.next_errors.clear()
            self.requests.clear()
            self.sent.clear()
            self.webhook.clear()
            self.chat_actions.clear()

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The JSON bodies of the calls to ``method``, in order."""
        return [r.json() for r in self.requests if r.method == "POST" and r.path.rsplit("/", 1)[-1] == method]

    # --- the API -----------------------------------------------------------------------------

    def _json(self, status: int, body: Any) -> tuple[int, bytes, str]:
        return status, json.dumps(body).encode(), "application/json"

    def _answer(self, req: Recorded) -> tuple[int, bytes, str]:
        with self._lock:
            self.requests.append(req)
        path = req.path.split("?", 1)[0]
        if req.method == "GET" and path.startswith("/file/bot"):
            return self._file(path)
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        if match is None:
            return self._json(404, error(404, "Not Found"))
        if match.group(1) != self.token:
            return self._json(401, error(401, "Unauthorized"))
        if req.method != "POST" or not req.headers.get("content-type", "").startswith("application/json"):
            return self._json(400, error(400, "Bad Request: expected a JSON body"))
        try:
            body = json.loads(req.body)
        except ValueError:
            return self._json(400, error(400, "Bad Request: invalid JSON"))
        if not isinstance(body, dict):
            return self._json(400, error(400, "Bad Request: the body must be an object"))
        with self._lock:
            if self.next_errors:
                status, answer = self.next_errors.pop(0)
                return self._json(status, answer)
        method = match.group(2)
        handler = {
            "getFile": self._get_file,
            "sendMessage": self._send_message,
            "sendLocation": self._send_location,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "deleteWebhook": self._delete_webhook,
            "sendChatAction": self._send_chat_action,
        }.get(method)
        if method in _MEDIA_FIELDS:
            return self._send_media(method, body)
        if handler is None:
            return self._json(404, error(404, "Not Found: method not found"))
        return handler(body)

    def _file(self, path: str) -> tuple[int, bytes, str]:
        prefix = f"/file/bot{self.token}/"
        if not path.startswith(prefix):
            return self._json(401, error(401, "Unauthorized"))
        for file_path, data in self.files.values():
            if path == prefix + file_path:
                return 200, data, "application/octet-stream"
        return self._json(404, error(404, "Not Found"))

    def _get_file(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        file_id = body.get("file_id")
        if file_id not in self.files:
            return self._json(400, error(400, "Bad Request: invalid file_id"))
        file_path, data = self.files[file_id]
        return self._json(
            200,
            {
                "ok": True,
                "result": {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_size": len(data), "file_path": file_path},
            },
        )

    def _check_chat(self, body: dict[str, Any]) -> tuple[int, bytes, str] | None:
        chat_id = body.get("chat_id")
        if not isinstance(chat_id, (str, int)) or not str(chat_id).lstrip("-").isdigit():
            return self._json(400, error(400, "Bad Request: chat not found"))
        if str(chat_id) in self.blocked:
            return self._json(403, error(403, "Forbidden: bot was blocked by the user"))
        return None

    def _send_chat_action(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        refused = self._check_chat(body)
        if refused:
            return refused
        if body.get("action") not in ("typing", "upload_photo", "record_voice", "upload_document", "find_location"):
            return self._json(400, error(400, "Bad Request: wrong parameter action in request"))
        with self._lock:
            self.chat_actions.append(body)
        return self._json(200, {"ok": True, "result": True})

    def _accept(self, method: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
        with self._lock:
            message_id = next(self._ids)
            self.sent.append((method, body, message_id))
        chat = {"id": int(body["chat_id"]), "type": "private"}
        return self._json(200, {"ok": True, "result": {"message_id": message_id, "chat": chat, "date": 1700000000}})

    def _send_message(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        refused = self._check_chat(body)
        if refused:
            return refused
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return self._json(400, error(400, "Bad Request: message text is empty"))
        if len(text) > 4096:
            return self._json(400, error(400, "Bad Request: message is too long"))
        markup = body.get("reply_markup")
        if markup is not None:
            problem = _keyboard_problem(markup)
            if problem:
                return self._json(400, error(400, f"Bad Request: {problem}"))
        return self._accept("sendMessage", body)

    def _send_media(self, method: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
        refused = self._check_chat(body)
        if refused:
            return refused
        media = body.get(_MEDIA_FIELDS[method])
        if not isinstance(media, str) or not media:
            return self._json(400, error(400, f"Bad Request: there is no {_MEDIA_FIELDS[method]} in the request"))
        caption = body.get("caption")
        if caption is not None and (not isinstance(caption, str) or len(caption) > 1024):
            return self._json(400, error(400, "Bad Request: message caption is too long"))
        return self._accept(method, body)

    def _send_location(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        refused = self._check_chat(body)
        if refused:
            return refused
        lat, lon = body.get("latitude"), body.get("longitude")
        if (
            not isinstance(lat, (int, float))
            or not isinstance(lon, (int, float))
            or not (-90 <= lat <= 90 and -180 <= lon <= 180)
        ):
            return self._json(400, error(400, "Bad Request: wrong latitude or longitude"))
        return self._accept("sendLocation", body)

    def _set_webhook(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith("https://"):
            return self._json(400, error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"))
        secret = body.get("secret_token")
        if secret is not None and (not isinstance(secret, str) or not _SECRET_TOKEN.match(secret)):
            return self._json(400, error(400, "Bad Request: secret token contains unallowed characters"))
        allowed = body.get("allowed_updates")
        if allowed is not None and (not isinstance(allowed, list) or not set(allowed) <= _UPDATE_KINDS):
            return self._json(400, error(400, "Bad Request: can't parse allowed_updates"))
        with self._lock:
            self.webhook = {"url": url, "secret_token": secret, "allowed_updates": allowed}
        return self._json(200, {"ok": True, "result": True, "description": "Webhook was set"})

    def _get_webhook_info(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        info: dict[str, Any] = {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 2}
        if self.webhook.get("allowed_updates") is not None:
            info["allowed_updates"] = self.webhook["allowed_updates"]
        if self.webhook:
            info.update(
                {
                    "max_connections": 40,
                    "ip_address": "203.0.113.7",
                    "last_error_date": 1700000000,
                    "last_error_message": "Wrong response from the webhook: 503 Service Unavailable",
                }
            )
        return self._json(200, {"ok": True, "result": info})

    def _delete_webhook(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        with self._lock:
            self.webhook = {}
        return self._json(200, {"ok": True, "result": True, "description": "Webhook was deleted"})


def _keyboard_problem(markup: Any) -> str:
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        return "can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays"
    buttons = [b for row in rows for b in row]
    if len(buttons) > 100:
        return "too many inline keyboard buttons"
    for button in buttons:
        if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
            return "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        kinds = [k for k in ("url", "callback_data") if k in button]
        if len(kinds) != 1:
            return "can't parse inline keyboard button: exactly one of url or callback_data"
        data = button.get("callback_data")
        if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= 64):
            return "BUTTON_DATA_INVALID"
    return ""
