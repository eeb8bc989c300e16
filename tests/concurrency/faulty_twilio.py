"""The fake Twilio (``tests.channels_app.fakes.twilio``) with a real vendor's bad days.

It is the same server (Basic auth, the account in the path, the form checked
as Twilio checks it, 201 with a Message resource), with faults set by ``mode``:

- ``ok``: every message is created;
- ``alternate``: every other message request, counted across all callers, is
  answered 500 before anything is created (the 1st, 3rd, 5th …);
- ``down``: every message request is answered 503;
- ``hold``: each request is held, before the vendor has read it, until
  ``release()``; ``held`` is set when one arrives. The test kills the worker
  that sent it; once released, the vendor goes on and creates the message its
  client is no longer there to hear about — the ambiguous case that an
  idempotency key exists for.

Every message request's ``I-Twilio-Idempotency-Token`` is recorded with what
was answered (``log``). A key already answered 2xx gets that answer again and
no new message (``replayed``), as an idempotency-aware vendor does, so
``created`` (messages made per key) shows a duplicate send, should one occur,
and ``log`` shows every attempt.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from channels_app.providers.twilio.sending import IDEMPOTENCY_HEADER
from tests.channels_app.fakes.twilio import FakeTwilio, TwilioRequest, twilio_error

HOLD_LIMIT_SECONDS = 30.0


@dataclass(frozen=True)
class Attempt:
    """One message request as the vendor saw it."""

    at: float  # time.monotonic() when the vendor answered (or began to)
    key: str  # the idempotency header ("" when absent)
    status: int
    sid: str = ""
    replayed: bool = False


class FaultyTwilio(FakeTwilio):
    """``FakeTwilio`` with failure modes and idempotency by ``I-Twilio-Idempotency-Token``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mode = "ok"
        self.log: list[Attempt] = []
        self.created: Counter[str] = Counter()
        self.held = threading.Event()
        self._released = threading.Event()
        self._answers: dict[str, Any] = {}
        self._counter = 0
        outer = self
        base = self._server.RequestHandlerClass

        class _HoldingHandler(base):  # type: ignore[misc, valid-type]
            def _handle(self) -> None:
                if outer.mode == "hold" and self.command == "POST":
                    outer.held.set()
                    outer._released.wait(HOLD_LIMIT_SECONDS)
                super()._handle()

            do_GET = do_POST = _handle

        self._server.RequestHandlerClass = _HoldingHandler

    def release(self) -> None:
        """Let held requests go on (and later ones through)."""
        self._released.set()

    # Called with the server's lock held: the counter and the records are consistent.
    def _answer(self, req: TwilioRequest) -> Any:
        if not (req.method == "POST" and req.path.endswith("/Messages.json")):
            return super()._answer(req)
        key = next((v for k, v in req.headers.items() if k.lower() == IDEMPOTENCY_HEADER.lower()), "")
        self._counter += 1
        if self.mode == "down":
            answer: Any = twilio_error(503, 20503, "Service Unavailable")
        elif self.mode == "alternate" and self._counter % 2 == 1:
            answer = twilio_error(500, 20500, "Internal Server Error")
        elif key and key in self._answers:
            self.log.append(Attempt(time.monotonic(), key, 201, self._answers[key][1]["sid"], replayed=True))
            return self._answers[key]
        else:
            answer = super()._answer(req)
        status, body = answer[0], answer[1]
        sid = body.get("sid", "") if isinstance(body, dict) else ""
        if 200 <= status < 300 and sid:
            self.created[key] += 1
            if key:
                self._answers[key] = answer
        self.log.append(Attempt(time.monotonic(), key, status, sid))
        return answer

    # --- what the vendor saw ---

    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self.log)

    def by_key(self) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {}
        for attempt in self.attempts():
            found.setdefault(attempt.key, []).append(attempt)
        return found
