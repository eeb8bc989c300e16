"""Requests generated from ``/api/v1/openapi.json`` by schemathesis, against a real Daphne.

Every operation gets boundary values (the coverage phase: the largest
integers, NUL and other odd strings, missing and null fields, wrong types,
wrong content types) and random ones (fuzzing), and every answer is checked
against the schema: never a 5xx, only documented statuses and content types,
bodies that match their response schema, anything the schema forbids refused
with a 4xx, anything it allows accepted, authentication enforced.
Uploads run with a chat session's token; their file content (a real image)
is beyond what a schema expresses, so there a refused valid-looking file is
not counted against the schema.
"""

from __future__ import annotations

import subprocess
import tempfile

from django.test import TransactionTestCase

from channels_app.webchat.sessions import chat_session_start
from rooms.services import room_create
from tests.api.test_api import new_token
from tests.concurrency.processes import VENV_BIN, child_env, start_daphnes

SCHEMATHESIS = VENV_BIN / "schemathesis"
UPLOADS = "/api/v1/chat/uploads"


class GeneratedRequestsTests(TransactionTestCase):
    def run_schemathesis(self, port: int, token: str, *options: str) -> None:
        if not SCHEMATHESIS.exists():
            self.fail("schemathesis is missing: .venv/bin/pip install -r requirements-dev.txt")
        args = [
            str(SCHEMATHESIS),
            "run",
            f"http://127.0.0.1:{port}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "8",
            # Reproducible: the same requests every run (a failure names its curl to replay).
            "--seed",
            "20261130",
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            *options,
        ]
        with tempfile.TemporaryDirectory(prefix="rk-schemathesis-") as cwd:
            done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=540)
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output[-12000:])
        self.assertIn("generated", output)
        self.assertNotIn(" 0 generated", output)

    def test_every_generated_request_gets_a_documented_answer(self) -> None:
        [(_, port)] = start_daphnes(self, 1)
        room_create(name="fuzzed")
        self.run_schemathesis(port, new_token(), "--checks", "all", "--exclude-path", UPLOADS)
        session = chat_session_start(display_name="Fuzz", open_now=True)
        self.run_schemathesis(
            port, session.token, "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--include-path", UPLOADS
        )
