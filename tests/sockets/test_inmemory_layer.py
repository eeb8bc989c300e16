"""The embedded default's channel layer: expiry is off the publish and receive paths, and nothing is left behind.

These build ``RoomKitInMemoryChannelLayer`` directly (it is process-local:
the same class whichever layer the settings configure) with short expiries.
Where a test needs time to pass without the layer's expiry timer having a
chance to run, it blocks the loop with ``time.sleep``: the timer only runs
when the loop gets a turn, so what a publish or a receive did is observed
exactly, with no race.
"""

from __future__ import annotations

import asyncio
import time

from channels.exceptions import ChannelFull
from django.test import SimpleTestCase

from rooms.realtime.channel_layer import EXPIRY_SLACK_SECONDS, RoomKitInMemoryChannelLayer

WAIT = 5.0 + EXPIRY_SLACK_SECONDS


async def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


class ExpiryOffThePublishPathTest(SimpleTestCase):
    async def test_group_send_touches_only_the_group_however_many_channels_are_stale(self):
        layer = RoomKitInMemoryChannelLayer(expiry=0.05)
        # 5,000 rooms' channels whose reader went away with a message unread,
        # each in its own group, and 5,000 idle channels with a reader waiting.
        for i in range(5_000):
            await layer.group_add(f"room.dead{i}", f"dead{i}")
            await layer.send(f"dead{i}", {"type": "stale"})
        idle = [asyncio.ensure_future(layer.receive(f"idle{i}")) for i in range(5_000)]
        members = ["a", "b", "c"]
        for name in members:
            await layer.group_add("room.active", name)
        readers = [asyncio.ensure_future(layer.receive(name)) for name in members]
        await asyncio.sleep(0)  # every reader is now waiting
        time.sleep(0.06)  # the stale messages expire; the loop gets no turn

        before_publish, channels = layer.expiry_checks, len(layer.channels)
        await layer.group_send("room.active", {"type": "frame", "n": 1})
        # The publish examined nothing for expiry and swept nothing: every
        # stale channel and its group is still there.
        self.assertEqual(layer.expiry_checks, before_publish)
        self.assertEqual(len(layer.channels), channels)
        self.assertEqual(len(layer.groups), 5_001)
        self.assertEqual([m["n"] for m in await asyncio.gather(*readers)], [1, 1, 1])

        # A receive on another channel examines nothing either.
        checks = layer.expiry_checks
        await layer.send("solo", {"type": "x"})
        self.assertEqual((await layer.receive("solo"))["type"], "x")
        self.assertEqual(layer.expiry_checks, checks)

        # The expiry timer does it, in its own time: the stale channels and
        # their groups go; the idle and active channels stay.
        await wait_until(lambda: not any(n.startswith("dead") for n in layer.channels), "stale channels are dropped")
        self.assertEqual(set(layer.groups), {"room.active"})
        self.assertGreaterEqual(layer.expiry_checks - before_publish, 5_000)
        self.assertEqual(sum(1 for n in layer.channels if n.startswith("idle")), 5_000)
        for task in idle:
            task.cancel()
        await asyncio.gather(*idle, return_exceptions=True)
        self.assertEqual(set(layer.channels), set(members))  # still in their group

    async def test_an_expired_message_is_never_delivered(self):
        layer = RoomKitInMemoryChannelLayer(expiry=0.05)
        await layer.group_add("room.x", "slow")
        await layer.send("slow", {"type": "old"})
        time.sleep(0.06)
        await layer.send("slow", {"type": "new"})
        self.assertEqual((await layer.receive("slow"))["type"], "new")
        # As with Channels' own layer, a channel whose message expired unread
        # lost its reader: it leaves its groups.
        self.assertNotIn("room.x", layer.groups)

    async def test_expired_messages_of_a_channel_nobody_reads_are_dropped_and_the_channel_forgotten(self):
        layer = RoomKitInMemoryChannelLayer(expiry=0.05)
        for i in range(3):
            await layer.send("gone", {"type": "m", "i": i})
        self.assertIn("gone", layer.channels)
        await wait_until(lambda: "gone" not in layer.channels, "the unread channel is forgotten")

    async def test_a_full_channel_makes_room_by_dropping_expired_messages(self):
        layer = RoomKitInMemoryChannelLayer(expiry=0.05, capacity=2)
        await layer.send("c", {"type": "m", "i": 1})
        await layer.send("c", {"type": "m", "i": 2})
        with self.assertRaises(ChannelFull):
            await layer.send("c", {"type": "m", "i": 3})
        time.sleep(0.06)
        await layer.send("c", {"type": "m", "i": 4})
        self.assertEqual((await layer.receive("c"))["i"], 4)

    async def test_group_send_skips_a_full_member(self):
        layer = RoomKitInMemoryChannelLayer(capacity=1)
        await layer.group_add("g", "full")
        await layer.group_add("g", "ok")
        await layer.send("full", {"type": "m", "i": 0})
        reader = asyncio.ensure_future(layer.receive("ok"))
        await asyncio.sleep(0)
        await layer.group_send("g", {"type": "m", "i": 1})
        self.assertEqual((await reader)["i"], 1)
        self.assertEqual((await layer.receive("full"))["i"], 0)


class GroupExpiryTest(SimpleTestCase):
    async def test_expired_membership_gets_nothing_and_is_dropped(self):
        layer = RoomKitInMemoryChannelLayer(group_expiry=0.05)
        await layer.group_add("g", "member")
        time.sleep(0.06)
        await layer.group_send("g", {"type": "m"})
        self.assertNotIn("member", layer.channels)  # nothing was queued for it
        self.assertNotIn("g", layer.groups)

    async def test_a_membership_nobody_sends_to_expires_by_the_timer(self):
        layer = RoomKitInMemoryChannelLayer(group_expiry=0.05)
        await layer.group_add("quiet", "member")
        await wait_until(lambda: not layer.groups and not layer.channels, "the membership expires")

    async def test_renewing_a_membership_keeps_it(self):
        layer = RoomKitInMemoryChannelLayer(group_expiry=0.5)
        await layer.group_add("g", "member")
        started = time.monotonic()
        while time.monotonic() - started < 1.0 + EXPIRY_SLACK_SECONDS:
            await layer.group_add("g", "member")  # as a hub renews its membership
            await asyncio.sleep(0.1)
        reader = asyncio.ensure_future(layer.receive("member"))
        await asyncio.sleep(0)
        await layer.group_send("g", {"type": "still here"})
        self.assertEqual((await reader)["type"], "still here")


class NothingLeftBehindTest(SimpleTestCase):
    async def test_cancelled_receivers_and_discarded_members_leave_nothing(self):
        layer = RoomKitInMemoryChannelLayer()
        names = [await layer.new_channel() for _ in range(1_000)]
        for i, name in enumerate(names):
            await layer.group_add(f"room.{i % 10}", name)
        readers = [asyncio.ensure_future(layer.receive(name)) for name in names]
        await asyncio.sleep(0)
        await layer.group_send("room.3", {"type": "m"})
        await asyncio.sleep(0)  # the room's 100 readers take their message
        for i, name in enumerate(names):
            await layer.group_discard(f"room.{i % 10}", name)
        for task in readers:
            task.cancel()
        results = await asyncio.gather(*readers, return_exceptions=True)
        self.assertEqual(sum(1 for r in results if isinstance(r, dict)), 100)
        self.assertEqual(layer.channels, {})
        self.assertEqual(layer.groups, {})
        # Each membership had a deadline a day away: the heap does not keep
        # them (nor their channel and group names) until then.
        await wait_until(lambda: layer.scheduled_expiries == 0, "the ended memberships' deadlines are dropped")

    async def test_a_message_handed_to_a_receiver_cancelled_before_it_ran_is_kept(self):
        layer = RoomKitInMemoryChannelLayer()
        reader = asyncio.ensure_future(layer.receive("c"))
        await asyncio.sleep(0)
        await layer.send("c", {"type": "m", "i": 1})  # handed to the waiting reader...
        reader.cancel()  # ...which is cancelled before it runs
        with self.assertRaises(asyncio.CancelledError):
            await reader
        self.assertEqual((await layer.receive("c"))["i"], 1)
        self.assertEqual(layer.channels, {})
