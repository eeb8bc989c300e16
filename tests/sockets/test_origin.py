"""Cross-site WebSocket hijacking: only pages this site serves may open its sockets.

The check runs before the handshake completes, so a refused page never gets
a socket at all (an HTTP 403 to a browser). Settings are read per handshake.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_app.webchat.sessions import chat_session_start
from roomkit_project.asgi import application
from tests.sockets.test_chat_consumer import ChatSocketTestBase


class OriginTest(ChatSocketTestBase):
    async def handshake(self, token: str, headers: list[tuple[bytes, bytes]]) -> bool:
        comm = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=headers)
        connected, _ = await comm.connect(timeout=5)
        if connected:
            await comm.disconnect()
        return connected

    async def test_only_allowed_origins_get_a_socket(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        token = session.token
        host = (b"host", b"127.0.0.1:8000")
        cases = [
            # PUBLIC_BASE_URL's origin (the default allowed list).
            ("public base url", [(b"origin", b"http://127.0.0.1:8000"), host], True),
            # Another site's page: the hijacking this prevents.
            ("another site", [(b"origin", b"https://evil.example"), host], False),
            ("look-alike host", [(b"origin", b"http://127.0.0.1.evil.example:8000"), host], False),
            ("same host, other scheme", [(b"origin", b"https://127.0.0.1:8000"), (b"host", b"example.org")], False),
            ("no origin", [host], False),
            ("null origin", [(b"origin", b"null"), host], False),
            ("garbage origin", [(b"origin", b"javascript:alert(1)"), host], False),
            # Same origin: the page came from the host the socket is opened on.
            ("same origin", [(b"origin", b"http://chat.example.org:9000"), (b"host", b"chat.example.org:9000")], True),
            ("same host, other port", [(b"origin", b"http://chat.example.org:9001"), (b"host", b"chat.example.org:9000")], False),
        ]
        for label, headers, allowed in cases:
            with self.subTest(label):
                self.assertEqual(await self.handshake(token, headers), allowed)

    async def test_settings_are_read_per_handshake(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        partner = [(b"origin", b"https://partner.example"), (b"host", b"chat.example.org")]
        self.assertFalse(await self.handshake(session.token, partner))
        with override_settings(ROOMKIT_WS_ALLOWED_ORIGINS=["http://127.0.0.1:8000", "https://partner.example"]):
            self.assertTrue(await self.handshake(session.token, partner))
            # An explicit port must match: 443 is https' own.
            self.assertTrue(await self.handshake(session.token, [(b"origin", b"https://partner.example:443")]))
            self.assertFalse(await self.handshake(session.token, [(b"origin", b"https://partner.example:8443")]))
        # ALLOWED_HOSTS entries other than "*" name trusted hosts (a subdomain pattern here).
        with override_settings(ALLOWED_HOSTS=[".example.com"]):
            self.assertTrue(await self.handshake(session.token, [(b"origin", b"https://app.example.com")]))
            self.assertFalse(await self.handshake(session.token, [(b"origin", b"https://example.net")]))
            # A same-origin page on a host that is not allowed is not trusted.
            self.assertFalse(await self.handshake(session.token, [(b"origin", b"http://other.org"), (b"host", b"other.org")]))
        # "*" opts out of the check entirely (e.g. behind a proxy that checks instead).
        with override_settings(ROOMKIT_WS_ALLOWED_ORIGINS=["*"]):
            self.assertTrue(await self.handshake(session.token, []))
            self.assertTrue(await self.handshake(session.token, [(b"origin", b"https://evil.example")]))

    async def test_refused_origin_never_reaches_the_token_check(self):
        # Even a valid token from a hostile page gets no socket, and a bad
        # token from a hostile page learns nothing (no 4401 either).
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        for token in (session.token, "not-a-token"):
            comm = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=[(b"origin", b"https://evil.example")])
            connected, code = await comm.connect(timeout=5)
            self.assertFalse(connected)
            self.assertNotEqual(code, 4401)
