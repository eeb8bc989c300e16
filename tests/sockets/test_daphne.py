"""Chat sockets through real Daphne processes and a real WebSocket client.

One server (both passes): what a browser sees, including the 4401 close that
the chat page acts on, which only a completed handshake can carry. Two servers
sharing Redis (scaled pass): a socket on server A hears what is sent through
server B, from a socket or from a webhook.
"""

from __future__ import annotations

import json
import time
import unittest

import httpx
from django.conf import settings
from django.test import TransactionTestCase

from channels_app.signing import SIGNATURE_HEADER, sign
from channels_app.webchat.sessions import chat_session_start
from channels_app.webchat.tokens import chat_token_issue
from rooms.models import ChannelBinding, Participant, RoomEvent
from rooms.realtime import broadcast as realtime
from tests.concurrency.processes import ORIGIN, quiet_logger, start_daphnes
from tests.support import make_channel

try:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover - listed in requirements-dev.txt
    ws_connect = None

NEEDS_WEBSOCKETS = "the 'websockets' client library is not installed (requirements-dev.txt)"


def _recv_until(ws, predicate, timeout: float = 8.0) -> tuple[dict, list[dict]]:
    skipped: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout}s; got {skipped}")
        try:
            frame = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            raise AssertionError(f"no matching frame within {timeout}s; got {skipped}") from None
        if predicate(frame):
            return frame, skipped
        skipped.append(frame)


def _open(testcase, port: int, token: str):
    ws = ws_connect(f"ws://127.0.0.1:{port}/ws/chat/?token={token}", origin=ORIGIN, open_timeout=10)
    testcase.addCleanup(ws.close)
    return ws


def _frames_for(ws, seconds: float) -> list[dict]:
    """Every frame that arrives within ``seconds``."""
    frames: list[dict] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frames.append(json.loads(ws.recv(timeout=remaining)))
        except TimeoutError:
            break
    return frames


def _presence(participant_id: str, status: str):
    return lambda f: f.get("kind") == "presence" and f.get("participant_id") == participant_id and f.get("status") == status


@unittest.skipIf(ws_connect is None, NEEDS_WEBSOCKETS)
class DaphneChatSocketTest(TransactionTestCase):
    def test_browser_view_of_refusal_and_of_a_message(self):
        [(_, port)] = start_daphnes(self, 1)
        session = chat_session_start(display_name="Ann", open_now=True)

        # A bad token: the client must see close code 4401 (not a failed handshake).
        for token in ("not-a-token", chat_token_issue(room_id=session.room_id, participant_id="nobody")):
            ws = _open(self, port, token)
            with self.assertRaises(ConnectionClosed) as caught:
                ws.recv(timeout=10)
            self.assertIsNotNone(caught.exception.rcvd, "server closed without a close frame")
            self.assertEqual(caught.exception.rcvd.code, 4401)

        ws = _open(self, port, session.token)
        ws.send(json.dumps({"type": "message", "text": "hi", "client_msg_id": "c1"}))
        ack, skipped = _recv_until(ws, lambda f: f.get("type") == "ack")
        self.assertEqual((ack["client_msg_id"], ack["seq"]), ("c1", 1))
        frames = skipped
        if not any(f.get("type") == "event" for f in frames):
            event, _ = _recv_until(ws, lambda f: f.get("type") == "event")
            frames.append(event)
        [event] = [f["event"] for f in frames if f.get("type") == "event"]
        self.assertEqual((event["seq"], event["room_id"], event["content"]["body"]), (1, session.room_id, "hi"))
        self.assertEqual(RoomEvent.objects.get().id, event["id"])

        # A page on another site gets no socket at all: the handshake is refused (HTTP 403).
        with self.assertRaises(InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{port}/ws/chat/?token={session.token}", origin="https://evil.example", open_timeout=10)
        self.assertEqual(refused.exception.response.status_code, 403)


@unittest.skipUnless(settings.REDIS_URL, "two server processes share sockets' groups only through Redis: set REDIS_URL")
@unittest.skipIf(ws_connect is None, NEEDS_WEBSOCKETS)
class TwoDaphneProcessesTest(TransactionTestCase):
    def test_socket_on_server_a_hears_what_is_sent_through_server_b(self):
        quiet_logger(self, "httpx")
        (_, port_a), (_, port_b) = start_daphnes(self, 2)
        session = chat_session_start(display_name="Ann", open_now=True)
        bob = Participant.objects.create(room_id=session.room_id, channel_id="webchat", display_name="Bob")
        bob_token = chat_token_issue(room_id=session.room_id, participant_id=bob.id)
        hook = make_channel("hook-xproc", secrets={"signing_secret": "xp-secret"})
        ChannelBinding.objects.create(room_id=session.room_id, channel=hook, address="crm-7")

        ann_on_a = _open(self, port_a, session.token)
        bob_on_b = _open(self, port_b, bob_token)

        # A message from Bob's socket on B reaches Ann's socket on A.
        bob_on_b.send(json.dumps({"type": "message", "text": "across servers", "client_msg_id": "x1"}))
        ack, _ = _recv_until(bob_on_b, lambda f: f.get("type") == "ack")
        self.assertEqual((ack["client_msg_id"], ack["seq"]), ("x1", 1))
        frame, _ = _recv_until(ann_on_a, lambda f: f.get("type") == "event")
        self.assertEqual(frame["event"]["seq"], 1)
        self.assertEqual(frame["event"]["content"]["body"], "across servers")
        self.assertEqual(frame["event"]["source"]["participant_id"], bob.id)

        # Typing on A is shown on B.
        ann_on_a.send(json.dumps({"type": "typing", "state": "start"}))
        frame, _ = _recv_until(bob_on_b, lambda f: f.get("type") == "ephemeral" and f.get("kind") == "typing_start")
        self.assertEqual(frame["participant_id"], session.participant_id)

        # A signed webhook handled by server B reaches the socket on server A.
        body = json.dumps({"id": "crm-1", "sender": "crm-7", "text": "from the CRM"}).encode()
        r = httpx.post(
            f"http://127.0.0.1:{port_b}/webhooks/{hook.id}/",
            content=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, "xp-secret")},
            timeout=15,
        )
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["seq"], 2)
        frame, _ = _recv_until(ann_on_a, lambda f: f.get("type") == "event" and f["event"]["seq"] == 2)
        self.assertEqual(frame["event"]["source"]["channel_id"], hook.id)
        self.assertEqual(frame["event"]["content"]["body"], "from the CRM")
        self.assertEqual(RoomEvent.objects.filter(room_id=session.room_id).count(), 2)

    def test_presence_typing_and_streams_cross_servers(self):
        (_, port_a), (_, port_b) = start_daphnes(self, 2)
        session = chat_session_start(display_name="Ann", open_now=True)
        bob = Participant.objects.create(room_id=session.room_id, channel_id="webchat", display_name="Bob")
        bob_token = chat_token_issue(room_id=session.room_id, participant_id=bob.id)
        # A Python subscriber in this process (no server loop here: the publisher thread's).
        heard: list[realtime.EphemeralEvent] = []
        sub = realtime.subscribe_room(session.room_id, heard.append)
        self.addCleanup(realtime.unsubscribe_room, sub)

        ann_on_a = _open(self, port_a, session.token)
        bob_on_b = _open(self, port_b, bob_token)
        frame, _ = _recv_until(ann_on_a, _presence(bob.id, "online"))
        self.assertEqual(frame["display_name"], "Bob")
        _recv_until(bob_on_b, _presence(session.participant_id, "online"))  # who was there already

        # Bob opens a second socket, on the other server: he was online already.
        bob_on_a = _open(self, port_a, bob_token)
        _recv_until(bob_on_a, _presence(session.participant_id, "online"))
        # Typing on B reaches Ann on A and Bob's other socket, not the socket that typed.
        bob_on_b.send(json.dumps({"type": "typing", "state": "start"}))
        _recv_until(ann_on_a, lambda f: f.get("kind") == "typing_start" and f.get("participant_id") == bob.id)
        _recv_until(bob_on_a, lambda f: f.get("kind") == "typing_start")
        self.assertEqual([f for f in _frames_for(bob_on_b, 0.5) if f.get("kind") == "typing_start"], [])

        # An AI reply streamed from another process (this one) reaches both servers' sockets in order.
        realtime.publish_stream_start(session.room_id, "s-x", "agent-9")
        for delta in ("a", "b", "c"):
            realtime.publish_stream_chunk(session.room_id, "s-x", delta)
        realtime.publish_stream_end(session.room_id, "s-x", "ev-x")
        realtime.flush_background()
        for ws in (ann_on_a, bob_on_b):
            _recv_until(ws, lambda f: f.get("type") == "stream_start" and f["stream_id"] == "s-x")
            chunks = [_recv_until(ws, lambda f: f.get("type") in ("stream_chunk", "stream_end"))[0] for _ in range(4)]
            self.assertEqual([c.get("delta") for c in chunks[:3]], ["a", "b", "c"])
            self.assertEqual(chunks[3], {"type": "stream_end", "stream_id": "s-x", "event_id": "ev-x"})

        # Closing one of Bob's sockets: still online. Closing the last, on the other server: offline.
        bob_on_b.close()
        frames = _frames_for(ann_on_a, 1.0)
        self.assertEqual([f for f in frames if f.get("kind") == "presence"], [])
        # (His typing ended with the socket that typed.)
        self.assertIn("typing_stop", [f.get("kind") for f in frames])
        bob_on_a.close()
        _recv_until(ann_on_a, _presence(bob.id, "offline"))

        # This process hears the room over its own subscription, which may trail server A's socket.
        def heard_offline() -> bool:
            return any(e.kind == "presence" and e.data["status"] == "offline" for e in heard if e.participant_id == bob.id)

        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and not heard_offline():
            time.sleep(0.02)
        kinds = [e.kind for e in heard if e.participant_id == bob.id]
        self.assertEqual(kinds, ["presence", "typing_start", "typing_stop", "presence"])
        self.assertEqual(
            [e.data["status"] for e in heard if e.kind == "presence" and e.participant_id == bob.id], ["online", "offline"]
        )
        self.assertEqual(RoomEvent.objects.filter(room_id=session.room_id).count(), 0)
