"""A fake VoiceMeUp ``queue_sms``: a real HTTP server on 127.0.0.1.

As the RoomKit library's VoiceMeUp provider describes the API (see
``fixtures/voicemeup/SOURCES.md``): ``POST /api/v1.1/json/queue_sms`` with a form
of ``username``, ``auth_token``, ``source_number``, ``destination_number``
(digits, no ``+``), ``message`` (at most 1000 characters) and ``attachment``
(a URL); it answers 200 with ``response_details`` (``success`` and a
``queued_sms_hash``, or ``error`` and a code such as ``permission_refused``).

``refuse_duplicates``: a message identical to one already queued is refused
with ``duplicate_entry`` (RoomKit's "SMS already queued"). ``drop_after_accept``
and ``answers`` as in the Sinch fake.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.channels_app.fakes.sinch import DROP, ScriptedVendorServer, VendorRequest

SEND_PATH = "/api/v1.1/json/queue_sms"
MAX_MESSAGE_CHARS = 1000


def _answer(status: str, code: str, content: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return (
        200,
        {
            "response_details": {
                "response_status": status,
                "response_messages": {"message": [{"code": code, "_content": content}]},
            }
        },
        {},
    )


class FakeVoiceMeUp(ScriptedVendorServer):
    """VoiceMeUp's ``queue_sms`` for one API user."""

    def __init__(self, *, username: str, auth_token: str) -> None:
        super().__init__()
        self.username = username
        self.auth_token = auth_token
        self.queued: list[dict[str, str]] = []
        self.refuse_duplicates = False
        self.drop_after_accept = 0
        self._hashes = itertools.count(1)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answers.clear()
            self.queued.clear()
            self.refuse_duplicates = False
            self.drop_after_accept = 0

    def route(self, req: VendorRequest) -> Any:
        if req.method != "POST" or req.path != SEND_PATH:
            return 404, b"Not Found", {"Content-Type": "text/plain"}
        if not req.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return _answer("error", "invalid_request", "expected a form")
        form = req.form()
        if form.get("username") != self.username or form.get("auth_token") != self.auth_token:
            return _answer("error", "permission_refused", "permission_refused")
        for field in ("source_number", "destination_number"):
            if not form.get(field, "").isdigit():
                return _answer("error", f"invalid_{field}", f"{field} must be digits")
        if not form.get("message") and not form.get("attachment"):
            return _answer("error", "missing_message", "message or attachment is required")
        if len(form.get("message", "")) > MAX_MESSAGE_CHARS:
            return _answer("error", "message_too_long", f"message exceeds {MAX_MESSAGE_CHARS} characters")
        sent = {k: form.get(k, "") for k in ("source_number", "destination_number", "message", "attachment")}
        if self.refuse_duplicates and any(q["fields"] == sent for q in self.queued):
            return _answer("error", "duplicate_entry", "SMS already queued")
        sms_hash = f"fake-hash-{next(self._hashes)}"
        self.queued.append({"hash": sms_hash, "fields": sent, **sent})
        if self.drop_after_accept:
            self.drop_after_accept -= 1
            return DROP
        return _answer("success", "queued_sms_hash", sms_hash)
