"""A fake Sinch XMS API: a real HTTP server on 127.0.0.1 that checks what Sinch checks.

``POST /xms/v1/{service_plan_id}/batches`` wants ``Authorization: Bearer <token>``
and a JSON batch as the Batches reference describes it; it answers 201 with the
batch (``fixtures/sinch/batch_created.json``'s shape, a fresh ``id``) or Sinch's
``{"code", "text"}`` 400 / 401 / 404. ``GET`` on the same path lists batches,
filtered by ``client_reference``, as Sinch's "List batches" does.

Scripts: ``answers`` (status, body, headers) are returned, in order, before any
batch is looked at (a 503, a 429 with ``Retry-After``); ``drop_after_accept``
accepts that many batches and then closes the connection without answering (an
answer lost on the way back).

``ScriptedVendorServer`` is the part any vendor fake can share (the VoiceMeUp
fake builds on it).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import LocalHTTPServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DROP = object()  # an answer that is never sent: the connection is closed instead
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class VendorRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


class ScriptedVendorServer(LocalHTTPServer):
    """A threaded HTTP server on 127.0.0.1; subclasses answer in ``route``."""

    def __init__(self) -> None:
        self.requests: list[VendorRequest] = []
        self.answers: list[tuple[int, Any, dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the second
            # waits for the client's delayed ACK (~40 ms a request).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                split = urlsplit(self.path)
                req = VendorRequest(
                    self.command, split.path, parse_qs(split.query), dict(self.headers.items()), self.rfile.read(length)
                )
                with outer.lock:
                    outer.requests.append(req)
                    scripted = outer.answers.pop(0) if outer.answers else None
                    answer = scripted if scripted is not None else outer.route(req)
                if answer is DROP:
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

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(_Handler)

    def route(self, req: VendorRequest) -> Any:
        raise NotImplementedError


def _error(status: int, code: str, text: str) -> tuple[int, dict[str, str], dict[str, str]]:
    return status, {"code": code, "text": text}, {}


class FakeSinch(ScriptedVendorServer):
    """Sinch's batches endpoint for one service plan and one API token."""

    def __init__(self, *, service_plan_id: str, api_token: str) -> None:
        super().__init__()
        self.service_plan_id = service_plan_id
        self.api_token = api_token
        self.batches: list[dict[str, Any]] = []
        self.drop_after_accept = 0
        self._ids = itertools.count(1)
        self._template = json.loads((FIXTURES / "sinch" / "batch_created.json").read_text())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answers.clear()
            self.batches.clear()
            self.drop_after_accept = 0

    @property
    def posts(self) -> list[VendorRequest]:
        return [r for r in self.requests if r.method == "POST"]

    def route(self, req: VendorRequest) -> Any:
        if req.path != f"/xms/v1/{self.service_plan_id}/batches":
            return 404, b"", {}
        if req.headers.get("Authorization") != f"Bearer {self.api_token}":
            return 401, b"", {}
        if req.method == "GET":
            wanted = (req.query.get("client_reference") or [None])[0]
            found = [b for b in self.batches if wanted is None or b.get("client_reference") == wanted]
            return 200, {"count": len(found), "page": 0, "page_size": len(found), "batches": found}, {}
        if not req.headers.get("Content-Type", "").startswith("application/json"):
            return _error(400, "syntax_invalid_json", "expected application/json")
        try:
            batch = req.json()
        except ValueError:
            return _error(400, "syntax_invalid_json", "The JSON in the request is invalid")
        problem = self._problem(batch)
        if problem:
            return _error(400, *problem)
        created = {**self._template, **batch, "id": f"01FAKESINCHBATCH{next(self._ids):010d}"}
        self.batches.append(created)
        if self.drop_after_accept:
            self.drop_after_accept -= 1
            return DROP
        return 201, created, {}

    @staticmethod
    def _problem(batch: Any) -> tuple[str, str] | None:
        if not isinstance(batch, dict):
            return "syntax_invalid_json", "a batch is a JSON object"
        to = batch.get("to")
        if not isinstance(to, list) or not to:
            return "syntax_constraint_violation", "'to' must be a non-empty list"
        for number in to:
            if not isinstance(number, str) or not E164.match(number):
                return "syntax_invalid_parameter_format", f"'{number}' is not a valid phone number"
        if not isinstance(batch.get("from"), str) or not batch["from"]:
            return "syntax_constraint_violation", "'from' is required"
        kind = batch.get("type", "mt_text")
        body = batch.get("body")
        if kind == "mt_text" and (not isinstance(body, str) or not body):
            return "syntax_constraint_violation", "'body' is required"
        if kind == "mt_media" and (not isinstance(body, dict) or not isinstance(body.get("url"), str)):
            return "syntax_constraint_violation", "'body.url' is required for mt_media"
        if kind not in ("mt_text", "mt_media"):
            return "syntax_invalid_parameter_format", f"unknown type '{kind}'"
        if batch.get("delivery_report", "none") not in ("none", "summary", "full", "per_recipient", "per_recipient_final"):
            return "syntax_invalid_parameter_format", "bad delivery_report"
        return None
