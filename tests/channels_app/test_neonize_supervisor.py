"""The WhatsApp Personal event source: pairing, the encrypted session, restarts with backoff, health in the admin.

The supervisor (``ChannelRunner``) runs for real on its own threads against
the fake neonize client (``tests/channels_app/fakes/neonize.py``), which
keeps its session in a real sqlite file as whatsmeow does. The real neonize
client under the same supervisor is in ``test_neonize_client``.
"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.test import TransactionTestCase
from django.utils import timezone
from neonize.exc import NeonizeError

from channels_app.models import WhatsAppPersonalSession
from channels_app.models import WhatsAppPersonalState as State
from channels_app.providers.neonize.sessions import SessionUnreadable, decrypt_session, encrypt_session
from channels_app.providers.neonize.supervisor import ChannelRunner, RestartPolicy
from tests.channels_app.fakes.neonize import ACCOUNT, QR_CODE, FakeClientFactory
from tests.support import make_channel

CHANNEL = "wa-personal"
# What neonize raised on this machine for a client that could not reach WhatsApp (see the README).
DIAL_ERROR = 'failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send handshake request: Get "https://web.whatsapp.com/ws/chat": Forbidden'


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def health() -> WhatsAppPersonalSession | None:
    return WhatsAppPersonalSession.objects.filter(channel_id=CHANNEL).first()


def in_state(state: str):
    return lambda: (row := health()) is not None and row.state == state and row


class RunnerCase(TransactionTestCase):
    def setUp(self) -> None:
        make_channel(CHANNEL, channel_type="whatsapp_personal", provider="neonize")
        self.factory = FakeClientFactory()
        self.runners: list[ChannelRunner] = []

    def tearDown(self) -> None:
        for runner in self.runners:
            runner.stop()

    def runner(self, **policy) -> ChannelRunner:
        options = {"base": 0.05, "maximum": 0.4, **policy}
        runner = ChannelRunner(
            CHANNEL, client_factory=self.factory, policy=RestartPolicy(**options), heartbeat_seconds=0.05, save_interval=0.2
        )
        self.runners.append(runner)
        runner.start()
        return runner


class PairingAndSessionTests(RunnerCase):
    def test_a_new_channel_shows_a_qr_code_then_connects_once_scanned_and_stores_its_session_encrypted(self) -> None:
        self.runner()
        row = wait_for(in_state(State.PAIRING), what="pairing")
        self.assertEqual(row.qr_code, QR_CODE)
        self.assertEqual(row.session_encrypted, "")

        self.factory.current.scan()
        row = wait_for(lambda: (r := in_state(State.CONNECTED)()) and r.session_encrypted and r, what="connected + saved")
        self.assertEqual((row.account, row.qr_code, row.restarts), (ACCOUNT, "", 0))
        self.assertIsNotNone(row.connected_at)
        # At rest the session is a Fernet token: neither sqlite's header nor the account's keys show.
        self.assertTrue(row.session_encrypted.startswith("gAAAA"))
        self.assertNotIn("SQLite", row.session_encrypted)
        self.assertNotIn(ACCOUNT, row.session_encrypted)
        database = decrypt_session(row.session_encrypted)
        self.assertTrue(database.startswith(b"SQLite format 3\x00"))
        self.assertIn(ACCOUNT.encode(), database)

    def test_a_restart_restores_the_session_and_connects_without_pairing(self) -> None:
        first = self.runner()
        wait_for(in_state(State.PAIRING))
        self.factory.current.scan()
        wait_for(lambda: (r := health()) and r.state == State.CONNECTED and r.session_encrypted)
        first.stop()
        self.assertEqual(health().state, State.STOPPED)

        self.runner()  # a new process: a new temporary directory, the session comes from the row
        wait_for(lambda: len(self.factory.clients) == 2 and self.factory.current.connected.is_set())
        self.assertEqual(self.factory.current.restored_account, ACCOUNT)
        self.assertNotEqual(self.factory.clients[0].database_path, self.factory.current.database_path)
        row = wait_for(in_state(State.CONNECTED))
        self.assertEqual(row.qr_code, "")

    def test_a_session_encrypted_under_another_secret_key_is_reported_and_the_channel_pairs_anew(self) -> None:
        with self.settings(SECRET_KEY="another-key-" + "x" * 40):
            token = encrypt_session(b"SQLite format 3\x00" + b"\x00" * 100)
        WhatsAppPersonalSession.objects.create(channel_id=CHANNEL, session_encrypted=token)
        with self.assertRaises(SessionUnreadable):
            decrypt_session(token)
        self.runner()
        row = wait_for(in_state(State.PAIRING))
        self.assertIn("cannot be decrypted", row.last_error)

    def test_logged_out_by_the_phone_forgets_the_session_and_asks_for_a_new_scan(self) -> None:
        self.runner()
        wait_for(in_state(State.PAIRING))
        self.factory.current.scan()
        wait_for(lambda: (r := health()) and r.state == State.CONNECTED and r.session_encrypted)

        self.factory.current.emit("on_logged_out", "LOGGED_OUT")
        # The runner restarts the client on a fresh database: a new QR to scan.
        row = wait_for(lambda: len(self.factory.clients) == 2 and in_state(State.PAIRING)(), what="pairing again")
        self.assertEqual((row.session_encrypted, row.account), ("", ""))
        self.assertIn("logged out: LOGGED_OUT", row.last_error)
        self.assertIsNone(self.factory.current.restored_account)


class RestartTests(RunnerCase):
    def test_failed_connects_restart_with_growing_jittered_delays_and_are_counted(self) -> None:
        self.factory.script = [NeonizeError(DIAL_ERROR), NeonizeError(DIAL_ERROR), NeonizeError(DIAL_ERROR)]
        starts: list[float] = []
        original = self.factory.__class__.__call__

        def recording(factory, **kwargs):
            starts.append(time.monotonic())
            return original(factory, **kwargs)

        self.factory.__class__ = type("Recording", (FakeClientFactory,), {"__call__": recording})
        self.runner(base=0.1, maximum=1.0)
        wait_for(lambda: len(self.factory.clients) == 4 and in_state(State.PAIRING)(), what="the fourth client pairing")
        self.factory.current.scan()
        row = wait_for(in_state(State.CONNECTED))
        self.assertEqual(row.restarts, 3)
        self.assertEqual(row.last_error, f"NeonizeError: {DIAL_ERROR}")
        self.assertIsNotNone(row.last_error_at)
        # Equal jitter: the n-th wait is in [c/2, c] with c = 0.1 * 2^(n-1).
        gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
        for n, gap in enumerate(gaps, start=1):
            ceiling = 0.1 * 2 ** (n - 1)
            self.assertGreaterEqual(gap, ceiling / 2, gaps)
        self.assertGreater(gaps[2], gaps[0], gaps)

    def test_it_gives_up_after_max_restarts_and_says_so(self) -> None:
        self.factory.script = [NeonizeError(DIAL_ERROR)] * 3
        self.runner(max_restarts=2)
        row = wait_for(in_state(State.FAILED), what="failed")
        self.assertEqual(len(self.factory.clients), 3)
        self.assertEqual(row.restarts, 2)
        self.assertIn("failed to dial whatsapp web websocket", row.last_error)

    def test_the_backoff_state_shows_when_the_next_attempt_is(self) -> None:
        self.factory.script = [NeonizeError(DIAL_ERROR)]
        self.runner(base=30.0, maximum=30.0)
        row = wait_for(in_state(State.BACKING_OFF))
        self.assertEqual(row.restarts, 1)
        self.assertGreater(row.next_attempt_at, timezone.now() + timezone.timedelta(seconds=10))


class AdminTests(RunnerCase):
    def setUp(self) -> None:
        super().setUp()
        admin = get_user_model().objects.create_superuser("admin", "admin@example.test", "pw")
        self.client.force_login(admin)

    def test_the_admin_shows_the_pairing_qr_as_an_inline_svg_and_never_the_session(self) -> None:
        self.runner()
        wait_for(in_state(State.PAIRING))
        page = self.client.get(f"/admin/channels_app/whatsapppersonalsession/{CHANNEL}/change/")
        self.assertEqual(page.status_code, 200)
        html = page.content.decode()
        self.assertRegex(html, r'<div class="wa-qr"><svg [^>]*class="segno"')
        self.assertIn("Link a device", html)
        self.assertIn("Waiting for QR scan", html)
        self.assertNotIn(QR_CODE, html)  # drawn, not printed

        self.factory.current.scan()
        wait_for(lambda: (r := health()) and r.state == State.CONNECTED and r.session_encrypted)
        html = self.client.get(f"/admin/channels_app/whatsapppersonalsession/{CHANNEL}/change/").content.decode()
        self.assertNotIn('class="wa-qr"', html)
        self.assertIn("not waiting to be paired", html)
        self.assertIn("Connected", html)
        self.assertIn(ACCOUNT, html)
        self.assertNotIn(health().session_encrypted[:40], html)

    def test_the_list_shows_state_restarts_last_error_and_a_silent_supervisor(self) -> None:
        WhatsAppPersonalSession.objects.create(
            channel_id=CHANNEL,
            state=State.CONNECTED,
            restarts=4,
            last_error=f"NeonizeError: {DIAL_ERROR}",
            heartbeat_at=timezone.now() - timezone.timedelta(minutes=10),
        )
        html = self.client.get("/admin/channels_app/whatsapppersonalsession/").content.decode()
        self.assertIn("no supervisor running", html)
        self.assertIn("NeonizeError: failed to dial whatsapp web", html)
        self.assertIn(">4<", html)
