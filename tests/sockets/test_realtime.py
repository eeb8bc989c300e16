"""Ephemeral events and AI reply streams on the chat socket, and Python subscribers.

Typing, presence, read receipts and tool calls reach the room's other sockets
as ``{"type": "ephemeral", "kind": …}`` frames and are never stored; stream
frames (``stream_start`` / ``stream_chunk`` / ``stream_end``) arrive in order;
nothing of a room reaches another room's sockets; ``subscribe_room`` hands the
same ephemeral events to Python code.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from rooms.errors import InvalidInput
from rooms.models import Participant, RoomEvent
from rooms.realtime import broadcast as realtime
from rooms.realtime.presence import presence_online
from rooms.services import participant_mark_read
from tests.sockets.helpers import drain, is_ephemeral, is_type, join_room, next_frame
from tests.sockets.test_chat_consumer import ChatSocketTestBase


class TypingTest(ChatSocketTestBase):
    async def test_typing_reaches_others_but_never_echoes_to_the_sender(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            ann_tab2, _ = await self.sockets.connect(session["token"])
            _bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            await drain(ann)
            await drain(ann_tab2)

            await ann.send_json_to({"type": "typing", "state": "start"})
            frame, _ = await next_frame(bob, is_ephemeral("typing_start"))
            self.assertEqual((frame["participant_id"], frame["display_name"]), (session["participant_id"], "Ann"))
            # The sending socket gets no echo; Ann's other tab is another socket and does.
            await next_frame(ann_tab2, is_ephemeral("typing_start"))
            self.assertEqual([f for f in await drain(ann) if f.get("type") == "ephemeral"], [])

            # Sending the message ends typing for everyone watching.
            await ann.send_json_to({"type": "message", "text": "done typing", "client_msg_id": "t1"})
            await next_frame(bob, is_ephemeral("typing_stop", participant_id=session["participant_id"]))

            # A bad state is an error frame, and nothing is published.
            await ann.send_json_to({"type": "typing", "state": "maybe"})
            err, _ = await next_frame(ann, is_type("error"))
            self.assertEqual(err["code"], "invalid_input")
            self.assertEqual([f for f in await drain(bob) if f.get("type") == "ephemeral"], [])

            # Closing a socket mid-typing stops the indicator.
            await ann.send_json_to({"type": "typing", "state": "start"})
            await next_frame(bob, is_ephemeral("typing_start"))
            await ann.disconnect()
            self.sockets.open.remove(ann)
            await next_frame(bob, is_ephemeral("typing_stop", participant_id=session["participant_id"]))
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 1)  # only the message
        finally:
            await self.sockets.close_all()


class PresenceTest(ChatSocketTestBase):
    async def test_online_with_the_first_socket_offline_with_the_last(self):
        session = await self.start_session("Ann")
        room_id = session["room_id"]
        try:
            ann, _ = await self.sockets.connect(session["token"])
            bob_id, bob_token = await join_room(room_id, "Bob")

            bob1, _ = await self.sockets.connect(bob_token)
            frame, _ = await next_frame(ann, is_ephemeral("presence", participant_id=bob_id))
            self.assertEqual((frame["status"], frame["display_name"]), ("online", "Bob"))
            # The newcomer is told who is already there.
            snapshot, _ = await next_frame(bob1, is_ephemeral("presence", participant_id=session["participant_id"]))
            self.assertEqual((snapshot["status"], snapshot["display_name"]), ("online", "Ann"))
            self.assertEqual(await sync_to_async(presence_online)(room_id), {session["participant_id"]: "Ann", bob_id: "Bob"})

            # A second socket of Bob's: no news for Ann; it too hears who is there.
            bob2, _ = await self.sockets.connect(bob_token)
            await next_frame(bob2, is_ephemeral("presence", participant_id=session["participant_id"]))
            self.assertEqual([f for f in await drain(ann) if f.get("kind") == "presence"], [])

            # Closing one of them: Bob is still online.
            await bob1.disconnect()
            self.sockets.open.remove(bob1)
            self.assertEqual([f for f in await drain(ann) if f.get("kind") == "presence"], [])
            self.assertIn(bob_id, await sync_to_async(presence_online)(room_id))

            # Closing the last: offline, once.
            await bob2.disconnect()
            self.sockets.open.remove(bob2)
            frame, _ = await next_frame(ann, is_ephemeral("presence", participant_id=bob_id))
            self.assertEqual(frame["status"], "offline")
            self.assertEqual([f for f in await drain(ann) if f.get("kind") == "presence"], [])
            self.assertEqual(await sync_to_async(presence_online)(room_id), {session["participant_id"]: "Ann"})
            self.assertEqual(await self.count_events(room_id=room_id), 0)  # presence is never stored
        finally:
            await self.sockets.close_all()

    async def test_a_refused_socket_is_never_online(self):
        session = await self.start_session("Ann")
        other = await self.start_session("Zed")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            await self.sockets.refusal("not-a-token")
            # Zed's token is for another room: Ann's room hears nothing of it.
            await self.sockets.connect(other["token"])
            self.assertEqual([f for f in await drain(ann) if f.get("type") == "ephemeral"], [])
        finally:
            await self.sockets.close_all()


class ReadReceiptTest(ChatSocketTestBase):
    async def test_receipts_move_forward_only_and_only_moves_are_published(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            _bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            for i in (1, 2):
                await bob.send_json_to({"type": "message", "text": f"b{i}", "client_msg_id": f"b{i}"})
                await next_frame(bob, is_type("ack"))
            await drain(bob)

            await ann.send_json_to({"type": "read", "seq": 2})
            receipt, _ = await next_frame(bob, is_ephemeral("read_receipt"))
            self.assertEqual((receipt["participant_id"], receipt["seq"]), (session["participant_id"], 2))

            # The same or an older seq: nothing moves, nothing is published.
            for seq in (2, 1):
                await ann.send_json_to({"type": "read", "seq": seq})
            self.assertEqual([f for f in await drain(bob) if f.get("kind") == "read_receipt"], [])
            # Beyond the room's last event, or not a number: an error frame, nothing moves.
            for bad in (3, 0, "2", None):
                await ann.send_json_to({"type": "read", "seq": bad})
                err, _ = await next_frame(ann, is_type("error"))
                self.assertEqual(err["code"], "invalid_seq", bad)
            participant = await database_sync_to_async(Participant.objects.get)(pk=session["participant_id"])
            self.assertEqual(participant.last_read_seq, 2)
        finally:
            await self.sockets.close_all()

    def test_service_never_moves_backwards(self):
        from channels_app.webchat.sessions import chat_session_start
        from rooms.inbound import InboundMessage, process_inbound

        session = chat_session_start(display_name="Ann", open_now=True)
        for i in range(3):
            process_inbound(
                InboundMessage(
                    channel_id="webchat",
                    room_id=session.room_id,
                    participant_id=session.participant_id,
                    sender=session.participant_id,
                    text=f"m{i}",
                )
            )
        self.assertTrue(participant_mark_read(participant_id=session.participant_id, seq=3))
        self.assertFalse(participant_mark_read(participant_id=session.participant_id, seq=1))
        self.assertFalse(participant_mark_read(participant_id=session.participant_id, seq=3))
        with self.assertRaises(InvalidInput):
            participant_mark_read(participant_id=session.participant_id, seq=4)
        self.assertEqual(Participant.objects.get(pk=session.participant_id).last_read_seq, 3)


class AgentFramesTest(ChatSocketTestBase):
    async def test_stream_and_tool_call_frames_reach_the_room_in_order_and_nothing_else(self):
        session = await self.start_session("Ann")
        elsewhere = await self.start_session("Zed")
        room_id = session["room_id"]
        try:
            ann, _ = await self.sockets.connect(session["token"])
            zed, _ = await self.sockets.connect(elsewhere["token"])

            def agent_reply():
                # As an agent runs: from sync code on another thread.
                realtime.publish_tool_call_start(room_id, "agent-1", [{"name": "lookup_order", "arguments": {"id": 7}}])
                realtime.publish_tool_call_end(room_id, "agent-1", 12.5)
                realtime.publish_stream_start(room_id, "s-1", "agent-1")
                for delta in ("Hel", "lo ", "<b>there</b>"):
                    realtime.publish_stream_chunk(room_id, "s-1", delta)
                realtime.publish_stream_end(room_id, "s-1", "ev-123")

            await sync_to_async(agent_reply)()
            frames = [await ann.receive_json_from(timeout=5) for _ in range(7)]
            for f in frames[:2]:
                f.pop("ts")
            self.assertEqual(
                frames,
                [
                    {
                        "type": "ephemeral",
                        "kind": "tool_call_start",
                        "agent_id": "agent-1",
                        "tool_calls": [{"name": "lookup_order", "arguments": {"id": 7}}],
                    },
                    {"type": "ephemeral", "kind": "tool_call_end", "agent_id": "agent-1", "duration_ms": 12.5},
                    {"type": "stream_start", "stream_id": "s-1", "agent_id": "agent-1"},
                    {"type": "stream_chunk", "stream_id": "s-1", "delta": "Hel"},
                    {"type": "stream_chunk", "stream_id": "s-1", "delta": "lo "},
                    {"type": "stream_chunk", "stream_id": "s-1", "delta": "<b>there</b>"},
                    {"type": "stream_end", "stream_id": "s-1", "event_id": "ev-123"},
                ],
            )
            self.assertEqual(await drain(zed), [])
            self.assertEqual(await database_sync_to_async(RoomEvent.objects.count)(), 0)

            # Published from async code (the server's own loop) too.
            realtime.publish_stream_start(room_id, "s-2", "agent-1")
            frame, _ = await next_frame(ann, is_type("stream_start"))
            self.assertEqual(frame["stream_id"], "s-2")
        finally:
            await self.sockets.close_all()


class SubscribeRoomTest(ChatSocketTestBase):
    async def test_python_subscribers_get_the_rooms_ephemeral_events(self):
        session = await self.start_session("Ann")
        elsewhere = await self.start_session("Zed")
        room_id = session["room_id"]
        got: list[realtime.EphemeralEvent] = []
        async_got: list[str] = []

        async def on_event_async(event: realtime.EphemeralEvent) -> None:
            await asyncio.sleep(0)
            async_got.append(event.kind)

        sub = await realtime.asubscribe_room(room_id, got.append)
        sub_async = await realtime.asubscribe_room(room_id, on_event_async)
        # From sync code (another thread), while the server's loop runs.
        sync_got: list[str] = []
        sub_sync = await sync_to_async(realtime.subscribe_room)(room_id, lambda e: sync_got.append(e.kind))
        try:
            ann, _ = await self.sockets.connect(session["token"])
            zed, _ = await self.sockets.connect(elsewhere["token"])
            await zed.send_json_to({"type": "typing", "state": "start"})  # another room
            await ann.send_json_to({"type": "typing", "state": "start"})
            await ann.send_json_to({"type": "message", "text": "hi", "client_msg_id": "m1"})
            await next_frame(ann, is_type("ack"))
            await ann.send_json_to({"type": "read", "seq": 1})
            await next_frame(ann, is_ephemeral("read_receipt"))
            realtime.publish_tool_call_start(room_id, "agent-1", [{"name": "search"}])
            realtime.publish_stream_start(room_id, "s-1", "agent-1")  # not ephemeral: not for subscribers
            realtime.publish_tool_call_end(room_id, "agent-1", 40)
            await next_frame(ann, is_ephemeral("tool_call_end"))
            await asyncio.sleep(0.05)

            kinds = [e.kind for e in got]
            self.assertEqual(
                kinds, ["presence", "typing_start", "typing_stop", "read_receipt", "tool_call_start", "tool_call_end"]
            )
            self.assertEqual({e.room_id for e in got}, {room_id})
            presence, typing, _stop, receipt, tool_start, tool_end = got
            self.assertEqual((presence.participant_id, presence.data["status"]), (session["participant_id"], "online"))
            self.assertEqual(typing.participant_id, session["participant_id"])
            self.assertEqual(receipt.data["seq"], 1)
            self.assertEqual(tool_start.data["tool_calls"], [{"name": "search"}])
            self.assertEqual((tool_end.data["agent_id"], tool_end.data["duration_ms"]), ("agent-1", 40))
            self.assertEqual(async_got, kinds)
            self.assertEqual(sync_got, kinds)

            # Unsubscribed: nothing more.
            self.assertTrue(realtime.unsubscribe_room(sub))
            self.assertTrue(await sync_to_async(realtime.unsubscribe_room)(sub_sync))
            self.assertFalse(realtime.unsubscribe_room(sub))
            await ann.send_json_to({"type": "typing", "state": "stop"})
            await asyncio.sleep(0.1)
            self.assertEqual(len(got), 6)
            self.assertEqual(len(sync_got), 6)
            self.assertEqual(async_got[-1], "typing_stop")
        finally:
            realtime.unsubscribe_room(sub_async)
            await self.sockets.close_all()
