"""Duplicates that arrive together: one event, every caller told the same answer.

Providers retry, and a retry can overlap the original. Sixteen copies of one
signed webhook sent at once to a real Daphne process must store one event and
answer all sixteen with its id (fifteen flagged duplicate); the same holds for
sixteen threads calling ``process_inbound`` directly with one message id.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.db import connection
from django.test import TransactionTestCase

from channels_app.signing import SIGNATURE_HEADER, sign
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from tests.concurrency.processes import quiet_logger, start_daphnes
from tests.support import make_channel

COPIES = 16
SECRET = "conc-secret"


def _fire_together(n: int, fn):
    """Run ``fn(i)`` in ``n`` threads released by one barrier; results in order."""
    barrier = threading.Barrier(n)

    def run(i: int):
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


class WebhookCopiesThroughDaphneTest(TransactionTestCase):
    def test_sixteen_concurrent_copies_store_one_event(self):
        quiet_logger(self, "httpx")
        channel = make_channel("hook-dedup", secrets={"signing_secret": SECRET})
        [(_, port)] = start_daphnes(self, 1)
        body = json.dumps({"id": "prov-msg-1", "sender": "+15550199", "text": "hello once"}).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
        url = f"http://127.0.0.1:{port}/webhooks/{channel.id}/"

        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=COPIES)) as client:
            # One unsigned request first: the server answers, and refuses it.
            bad = client.post(url, content=body, headers={"Content-Type": "application/json"})
            self.assertEqual(bad.status_code, 403, bad.text)
            answers = _fire_together(COPIES, lambda i: client.post(url, content=body, headers=headers))

        for r in answers:
            self.assertEqual(r.status_code, 200, r.text)
        data = [r.json() for r in answers]
        event_ids = {d["event_id"] for d in data}
        self.assertEqual(len(event_ids), 1, data)
        self.assertEqual(sorted(d["duplicate"] for d in data), [False] + [True] * (COPIES - 1))
        self.assertEqual({d["seq"] for d in data}, {1})
        self.assertEqual(len({d["room_id"] for d in data}), 1)

        # One room (a new sender opens one, not sixteen), one event, one participant.
        self.assertEqual(RoomEvent.objects.count(), 1)
        event = RoomEvent.objects.get()
        self.assertEqual(event.id, event_ids.pop())
        self.assertEqual(event.provider_message_id, "prov-msg-1")
        self.assertEqual(event.content, {"type": "text", "body": "hello once"})
        self.assertEqual(Room.objects.count(), 1)
        self.assertEqual(Room.objects.get().last_seq, 1)
        self.assertEqual(ChannelBinding.objects.filter(channel=channel).count(), 1)
        self.assertEqual(Participant.objects.count(), 1)


class CopiesThroughProcessInboundTest(TransactionTestCase):
    def test_sixteen_threads_same_message_id(self):
        channel = make_channel("sms-dedup", channel_type="sms", secrets={"signing_secret": SECRET})
        sender = "+15550142"
        room = Room.objects.create()
        ChannelBinding.objects.create(room=room, channel=channel, address=sender)
        # A message already in the room: the copies race for seq 2.
        first = process_inbound(InboundMessage(channel_id=channel.id, sender=sender, text="before", provider_message_id="p0"))
        self.assertEqual(first.seq, 1)

        def post(i: int):
            try:
                return process_inbound(
                    InboundMessage(channel_id=channel.id, sender=sender, text="the copy", provider_message_id="p1")
                )
            finally:
                connection.close()

        results = _fire_together(COPIES, post)

        self.assertEqual(sorted(r.status for r in results), ["duplicate"] * (COPIES - 1) + ["stored"])
        self.assertEqual({r.event_id for r in results}, {results[0].event_id})
        self.assertEqual({r.seq for r in results}, {2})
        self.assertEqual({r.room_id for r in results}, {room.id})
        self.assertEqual(RoomEvent.objects.filter(provider_message_id="p1").count(), 1)
        self.assertEqual(list(RoomEvent.objects.order_by("seq").values_list("seq", flat=True)), [1, 2])
        self.assertEqual(Room.objects.get(pk=room.pk).last_seq, 2)
        # The sender is one participant, not one per racing copy.
        self.assertEqual(Participant.objects.filter(room=room, address=sender).count(), 1)
        # The next message continues the sequence without a gap.
        after = process_inbound(InboundMessage(channel_id=channel.id, sender=sender, text="after", provider_message_id="p2"))
        self.assertEqual(after.seq, 3)


class FirstMessagesFromOneSenderTest(TransactionTestCase):
    def test_concurrent_first_messages_make_one_participant(self):
        channel = make_channel("sms-first", channel_type="sms", secrets={"signing_secret": SECRET})
        sender = "+15550163"
        room = Room.objects.create()
        binding = ChannelBinding.objects.create(room=room, channel=channel, address=sender)

        def post(i: int):
            try:
                return process_inbound(
                    InboundMessage(channel_id=channel.id, sender=sender, text=f"first {i}", provider_message_id=f"f{i}")
                )
            finally:
                connection.close()

        results = _fire_together(8, post)

        self.assertEqual([r.status for r in results], ["stored"] * 8)
        self.assertEqual(sorted(r.seq for r in results), list(range(1, 9)))
        participants = list(Participant.objects.filter(room=room))
        self.assertEqual(len(participants), 1, [p.id for p in participants])
        self.assertEqual(set(RoomEvent.objects.values_list("source_participant_id", flat=True)), {participants[0].id})
        binding.refresh_from_db()
        self.assertEqual(binding.participant_id, participants[0].id)
