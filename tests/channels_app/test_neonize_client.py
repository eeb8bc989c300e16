"""The real neonize client (whatsmeow as a Go shared library) under our supervisor, with WhatsApp out of reach.

The channel's ``proxy`` points the real client at a local HTTP proxy that
refuses every CONNECT, so nothing leaves this machine: the test sees the Go
side ask for ``web.whatsapp.com:443``, neonize raise ``NeonizeError`` with
whatsmeow's message, and the supervisor record it and restart with backoff.
Pairing itself needs WhatsApp's servers and cannot be tested here.
"""

from __future__ import annotations

import socketserver
import threading

from django.test import SimpleTestCase
from neonize.proto import Neonize_pb2 as neonize_proto

from channels_app.models import WhatsAppPersonalState as State
from channels_app.providers.neonize.client import NeonizeClient, jid_from_str, jid_to_str, neonize_client
from channels_app.providers.neonize.supervisor import ChannelRunner, RestartPolicy
from tests.channels_app.test_neonize_supervisor import CHANNEL, RunnerCase, health, wait_for


class RefusingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that records each request line and answers 403: the client's dial fails here."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.request_lines: list[bytes] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.request_lines.append(self.rfile.readline().strip())
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class RealClientTests(RunnerCase):
    def setUp(self) -> None:
        super().setUp()
        self.proxy = RefusingProxy()
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
        self.addCleanup(self.proxy.server_close)
        self.addCleanup(self.proxy.shutdown)

    def test_the_real_client_cannot_reach_whatsapp_and_the_supervisor_records_it_and_restarts(self) -> None:
        runner = ChannelRunner(
            CHANNEL,
            client_factory=neonize_client,
            policy=RestartPolicy(base=0.05, maximum=0.2),
            proxy=self.proxy.url,
            heartbeat_seconds=0.05,
        )
        self.runners.append(runner)
        runner.start()
        row = wait_for(lambda: (r := health()) and r.restarts >= 2 and r, timeout=30, what="two restarts")
        self.assertIn(row.state, (State.BACKING_OFF, State.STARTING))
        self.assertTrue(row.last_error.startswith("NeonizeError: failed to dial whatsapp web websocket"), row.last_error)
        self.assertIn("web.whatsapp.com/ws/chat", row.last_error)
        self.assertGreaterEqual(len(self.proxy.request_lines), 2)
        self.assertEqual(set(self.proxy.request_lines), {b"CONNECT web.whatsapp.com:443 HTTP/1.1"})
        # whatsmeow created its store at the path it was given (nothing paired, so nothing worth keeping yet).
        self.assertTrue(runner.database_path.endswith("session.sqlite3"))
        self.assertEqual(row.qr_code, "")


class ClientHandleTests(SimpleTestCase):
    def test_each_client_of_a_channel_has_its_own_go_handle_on_the_same_database(self) -> None:
        # neonize stops a client by its handle when the Python object is collected: a restarted
        # channel's old client being collected must not stop the new one.
        first = NeonizeClient(channel_id=CHANNEL, database_path="/tmp/never-opened.sqlite3", events=None)
        second = NeonizeClient(channel_id=CHANNEL, database_path="/tmp/never-opened.sqlite3", events=None)
        self.assertNotEqual(first._client.uuid, second._client.uuid)
        self.assertEqual((first._client.name, second._client.name), ("/tmp/never-opened.sqlite3",) * 2)


class JidTests(SimpleTestCase):
    def test_addresses_round_trip_through_neonize_jids(self) -> None:
        jid = jid_from_str("15551234567@s.whatsapp.net")
        self.assertIsInstance(jid, neonize_proto.JID)
        self.assertEqual((jid.User, jid.Server), ("15551234567", "s.whatsapp.net"))
        self.assertEqual(jid_to_str(jid), "15551234567@s.whatsapp.net")
        self.assertEqual(jid_to_str(jid_from_str("+15551234567")), "15551234567@s.whatsapp.net")
        self.assertEqual(jid_to_str(jid_from_str("123456789012345@lid")), "123456789012345@lid")
        # A device suffix is a phone of the person, not another person.
        self.assertEqual(jid_to_str(jid_from_str("15551234567:12@s.whatsapp.net")), "15551234567@s.whatsapp.net")
        for bad in ("", "@s.whatsapp.net", "not a number!@s.whatsapp.net"):
            with self.assertRaises(ValueError, msg=bad):
                jid_from_str(bad)
