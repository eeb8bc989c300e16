"""Under one visitor's load (8 posters x 50 messages, each answered by a streamed AI reply), no event frame is lost.

A real Daphne process serves the sockets (on the Redis layer in the scaled
pass, the in-memory one otherwise); the scripted demo agent answers every
message in-process, streaming a chunk per word, so the layer carries the
chunks too. A watcher socket stays connected throughout and must receive
every stored visible event, once each, in ``seq`` order.
"""

from __future__ import annotations

import collections
import io
import json
import threading
import time
import unittest

from django.core.management import call_command
from django.test import TransactionTestCase

from agents.models import Generation
from channels_app.webchat.services import webchat_events_after
from channels_app.webchat.sessions import chat_session_start
from channels_app.webchat.tokens import chat_token_issue
from rooms.models import Participant, RoomEvent
from tests.concurrency.processes import ORIGIN, start_daphnes

try:
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover - listed in requirements-dev.txt
    ws_connect = None

POSTERS = 8
MESSAGES = 50


def _visible_seqs(room_id: str) -> list[int]:
    seqs: list[int] = []
    after = 0
    while True:
        events, last = webchat_events_after(room_id, after, limit=500)
        seqs += [e["seq"] for e in events]
        if last == after:
            return seqs
        after = last


@unittest.skipIf(ws_connect is None, "the 'websockets' client library is not installed (requirements-dev.txt)")
class LoadTest(TransactionTestCase):
    def test_every_event_frame_reaches_a_connected_socket_under_streaming_load(self):
        call_command("seed_demo", stdout=io.StringIO())
        # The AI replies run in the server process; no rate limit (this is load on purpose).
        [(server, port)] = start_daphnes(
            self,
            1,
            ROOMKIT_TASK_MODE="thread",
            ROOMKIT_CHAT_FRAME_RATE="",
            ROOMKIT_CHAT_MESSAGE_RATE="",
            ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE="",
        )
        session = chat_session_start(display_name="Watcher", open_now=True)
        room_id = session.room_id
        tokens = []
        for i in range(POSTERS):
            p = Participant.objects.create(room_id=room_id, channel_id="webchat", display_name=f"P{i}")
            tokens.append(chat_token_issue(room_id=room_id, participant_id=p.id))

        url = f"ws://127.0.0.1:{port}/ws/chat/?token="
        watcher = ws_connect(url + session.token, origin=ORIGIN, open_timeout=10, max_size=None)
        self.addCleanup(watcher.close)
        watcher.send(json.dumps({"type": "resume", "after_seq": 0}))
        self.assertEqual(json.loads(watcher.recv(timeout=10))["type"], "resumed")
        seqs: list[int] = []
        other_frames: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                try:
                    frame = json.loads(watcher.recv(timeout=0.2))
                except TimeoutError:
                    continue
                if frame.get("type") == "event":
                    seqs.append(frame["event"]["seq"])
                else:
                    other_frames.append(frame.get("type"))

        watching = threading.Thread(target=watch, daemon=True)
        watching.start()

        errors: list[str] = []

        def post(i: int) -> None:
            try:
                with ws_connect(url + tokens[i], origin=ORIGIN, open_timeout=10, max_size=None) as ws:
                    for n in range(MESSAGES):
                        ws.send(json.dumps({"type": "message", "text": f"hello {i}-{n}", "client_msg_id": f"{i}-{n}"}))
                    acked = 0
                    deadline = time.monotonic() + 120
                    while acked < MESSAGES and time.monotonic() < deadline:
                        frame = json.loads(ws.recv(timeout=120))
                        if frame.get("type") == "ack":
                            acked += 1
                        elif frame.get("type") == "error":
                            errors.append(str(frame))
                    if acked < MESSAGES:
                        errors.append(f"poster {i}: {acked} acks")
            except Exception as exc:  # reported below
                errors.append(f"poster {i}: {exc!r}")

        posters = [threading.Thread(target=post, args=(i,)) for i in range(POSTERS)]
        for t in posters:
            t.start()
        for t in posters:
            t.join(180)
        if errors:
            print(server.output(30000))
        self.assertEqual(errors, [])
        # Every message is answered: wait until no reply is owed and the room is quiet.
        deadline = time.monotonic() + 180
        count, quiet_since = -1, time.monotonic()
        while True:
            owed = Generation.objects.filter(room_id=room_id, status__in=("pending", "running")).exists()
            now_count = RoomEvent.objects.filter(room_id=room_id).count()
            if now_count != count or owed:
                count, quiet_since = now_count, time.monotonic()
            elif time.monotonic() - quiet_since > 1.0:
                break
            self.assertLess(time.monotonic(), deadline, "replies not stored in time")
            time.sleep(0.2)
        expected = _visible_seqs(room_id)
        self.assertGreaterEqual(len(expected), 2 * POSTERS * MESSAGES)
        deadline = time.monotonic() + 60
        while len(seqs) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        watching.join(5)
        summary = (
            f"{len(expected)} visible events stored; the watcher got {len(seqs)} event frames, "
            f"{len(set(seqs))} distinct; frames of the streamed replies: {dict(collections.Counter(other_frames))}"
        )
        self.assertEqual(sorted(set(seqs)), expected, f"event frames lost: {summary}")
        self.assertEqual(seqs, expected, f"event frames duplicated or out of order: {summary}")
        self.assertGreater(other_frames.count("stream_chunk"), 0, f"the replies did not stream: {summary}")
