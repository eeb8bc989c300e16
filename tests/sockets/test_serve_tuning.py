"""``manage.py serve`` with many sockets in mind: open sockets out of the collector's reach, closed ones freed at once.

A real ``serve`` process (``tests/sockets/serve_probe.py``: the command as it
runs, plus a probe that counts live Daphne protocol objects on ``SIGUSR1``)
and real WebSocket clients. While sockets are open, the periodic
collect-and-freeze moves their Daphne objects out of what the collector scans,
so full collections stay short however many are open. When they close, every
one of those objects is freed, although frozen objects are never collected:
Daphne's reference cycles are cut as it forgets a connection
(``roomkit_project.daphne_server``), so reference counting frees them.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import unittest
from pathlib import Path

import httpx
from django.test import TransactionTestCase

from channels_app.webchat.sessions import chat_session_start
from roomkit_project.gc_tuning import YOUNG_THRESHOLD
from tests.concurrency.processes import ORIGIN, VENV_BIN, child_env, free_port, start_child, wait_for_port

try:
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover - listed in requirements-dev.txt
    ws_connect = None

SOCKETS = 20


@unittest.skipIf(ws_connect is None, "the 'websockets' client library is not installed (requirements-dev.txt)")
class ServeTuningTest(TransactionTestCase):
    def _start(self) -> None:
        self.port = free_port()
        self.report_file = str(Path(tempfile.mkdtemp(prefix="rk-serve-probe-")) / "report.json")
        self.server = start_child(
            self,
            [str(VENV_BIN / "python"), "-m", "tests.sockets.serve_probe", self.report_file, str(self.port)],
            child_env(),
            name=f"serve-probe-{self.port}",
        )
        wait_for_port(self.server, self.port, deadline_s=60)

    def _report(self) -> dict:
        before = os.stat(self.report_file).st_mtime_ns if os.path.exists(self.report_file) else 0
        self.server.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(self.report_file) and os.stat(self.report_file).st_mtime_ns != before:
                return json.loads(Path(self.report_file).read_text())
            time.sleep(0.02)
        raise AssertionError(f"the server did not report:\n{self.server.output()}")

    def _wait_for(self, condition, what: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            report = self._report()
            if condition(report):
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting until {what}; last report {report}\n{self.server.output()}")
            time.sleep(0.1)

    def test_open_sockets_are_frozen_and_closed_ones_freed(self):
        self._start()
        tokens = [chat_session_start(display_name=f"V{i}", open_now=True).token for i in range(SOCKETS)]
        # A plain HTTP request too: its connection must not linger either.
        self.assertEqual(httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=20).status_code, 200)

        sockets = []
        try:
            for token in tokens:
                sockets.append(ws_connect(f"ws://127.0.0.1:{self.port}/ws/chat/?token={token}", origin=ORIGIN, open_timeout=20))
            report = self._wait_for(
                lambda r: r["ws_protocols"] == SOCKETS and r["ws_protocols_scanned_by_gc"] == 0,
                "every open socket's protocol is out of the collector's reach",
            )
            self.assertEqual(report["gc_threshold"][0], YOUNG_THRESHOLD)
            self.assertTrue(report["autobahn_plain_log_helpers"])
            soft, hard = report["open_file_limit"]
            self.assertEqual(soft, hard if hard >= 0 else soft)  # serve raised it to the hard limit
        finally:
            for ws in sockets:
                ws.close()

        self._wait_for(
            lambda r: r["ws_protocols"] == 0 and r["http_channels"] == 0,
            "the closed connections' protocols are freed (by reference counting: they were frozen)",
        )
