"""The loss-free reconnect promise: a client that drops at random moments while others write loses nothing.

The client here keeps its resume point the way the chat page does
(``channels_app/static/webchat/chat.js``): it resumes from ``resume_seq``, which moves
only with the server's ``resumed`` marker (``through_seq``) and with event
frames that come after that marker on the same socket. It disconnects at
random points: before its replay started, in the middle of it, in live
traffic. Writers meanwhile post from several threads, with internal events
(seqs sockets never see) among them.

Checked at every disconnect: every visible event up to the resume point has
been received (so the next resume skips nothing), and each socket's event
frames came in strictly increasing ``seq`` order. At the end the client holds
exactly the room's visible events.
"""

from __future__ import annotations

import random
import threading
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection

from channels_app.webchat.services import webchat_events_after
from channels_app.webchat.sessions import chat_session_start
from rooms.inbound import InboundMessage, process_inbound
from tests.sockets.test_chat_consumer import ChatSocketTestBase
from tests.sockets.test_order import SENDER, SMS, _bind_sms, visible_seqs

WRITERS = 6
WRITING_SECONDS = 8.0


class VisibleSoFar:
    """The room's visible seqs, read incrementally (what a resume from 0 would replay)."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.seqs: list[int] = []
        self.covered = 0

    def catch_up(self) -> None:
        while True:
            events, last = webchat_events_after(self.room_id, self.covered, limit=500)
            self.seqs += [e["seq"] for e in events]
            if last == self.covered:
                return
            self.covered = last


class RandomDisconnectResumeTest(ChatSocketTestBase):
    async def test_a_client_dropping_at_random_while_others_write_ends_with_every_visible_event_once(self):
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        note = f"(random seed {seed})"
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        await database_sync_to_async(_bind_sms)(room_id)

        errors: list[str] = []

        def writer(w: int) -> None:
            # Bursts of a few messages, for WRITING_SECONDS, across the client's reconnects.
            wrng = random.Random(seed + w)
            n = 0
            until = time.monotonic() + WRITING_SECONDS
            try:
                while time.monotonic() < until:
                    for _ in range(wrng.randint(1, 15)):
                        process_inbound(
                            InboundMessage(
                                channel_id=SMS,
                                sender=SENDER,
                                text=f"w{w}-{n}",
                                provider_message_id=f"w{w}-{n}",
                                visibility="internal" if n % 7 == 6 else None,  # a seq sockets never see
                            )
                        )
                        n += 1
                    time.sleep(wrng.uniform(0.0, 0.06))
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()

        stored = VisibleSoFar(room_id)
        resume_seq = 0
        seen: set[int] = set()
        received = 0
        reconnects = 0
        final = False
        try:
            while True:
                writing = any(t.is_alive() for t in threads)
                final = not writing
                comm, _ = await self.sockets.connect(session.token)
                reconnects += 1
                await comm.send_json_to({"type": "resume", "after_seq": resume_seq})
                in_order = False
                socket_seqs: list[int] = []
                budget = 10**9 if final else rng.choice([0, 1, 3, 8, 20, 50])
                quiet = 0.6 if final else 0.1
                while budget > 0:
                    # (receive_nothing waits without cancelling the socket, as a timed-out receive would.)
                    if await comm.receive_nothing(timeout=quiet):
                        if final and not in_order:
                            continue  # the final replay has not ended yet
                        break
                    frame = await comm.receive_json_from()
                    if frame.get("type") == "event":
                        seq = frame["event"]["seq"]
                        socket_seqs.append(seq)
                        seen.add(seq)
                        received += 1
                        budget -= 1
                        if in_order:
                            resume_seq = max(resume_seq, seq)
                    elif frame.get("type") == "resumed":
                        resume_seq = max(resume_seq, frame["through_seq"])
                        in_order = True
                self.assertEqual(socket_seqs, sorted(set(socket_seqs)), f"a socket's events out of order {note}")
                await comm.disconnect()
                self.sockets.open.remove(comm)
                await database_sync_to_async(stored.catch_up)()
                missing = [s for s in stored.seqs if s <= resume_seq and s not in seen]
                self.assertEqual(missing, [], f"the resume point {resume_seq} skips events {note}")
                if final:
                    break
        finally:
            for t in threads:
                t.join(60)
            await self.sockets.close_all()
        self.assertEqual(errors, [])
        visible = await database_sync_to_async(visible_seqs)(room_id)
        self.assertGreater(len(visible), 300, note)
        self.assertEqual(sorted(seen), visible, f"the client does not hold exactly the visible events {note}")
        note += f": {reconnects} connections, {received} event frames for {len(visible)} visible events"
        self.assertGreater(reconnects, 10, note)
        # Resumes overlap (that is their point), but never by more than a replay's worth.
        self.assertGreaterEqual(received, len(visible))
