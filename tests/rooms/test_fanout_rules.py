"""Fan-out: who gets a Delivery row for an event (visibility, access, mute, category), with what content."""

from __future__ import annotations

from django.test import TestCase

from rooms import registries, services
from rooms.enums import Access, ChannelCategory, ChannelType, DeliveryStatus, EventStatus, EventType, Visibility
from rooms.models import Channel, Delivery
from tests.rooms.fixtures import send
from tests.support import FakeHTTPServer, make_channel

RICH = {"type": "rich", "body": "<p>Your order <b>#42</b> has shipped</p>", "format": "html"}


def _targets(event_id: str) -> dict[str, str]:
    """channel_id -> recipient of each delivery planned for an event."""
    return dict(Delivery.objects.filter(event_id=event_id).values_list("channel_id", "recipient"))


class FanoutTestCase(TestCase):
    """A room opened by an SMS sender, with a transport of several kinds attached."""

    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        make_channel("crm", channel_type=ChannelType.WEBHOOK, provider="")
        make_channel("wa", channel_type=ChannelType.WHATSAPP, provider="")
        self.room_id = send("sms-in", "+1555", "hi").room_id
        for channel_id, address in (("mail", "ann@example.com"), ("crm", "crm-7"), ("wa", "+1666")):
            services.channel_attach(room_id=self.room_id, channel_id=channel_id, address=address)

    def say(self, text: str = "hello", **fields):
        return send("sms-in", "+1555", text, **fields)


class WhoReceivesTests(FanoutTestCase):
    def test_every_other_transport_binding_gets_one_pending_delivery(self) -> None:
        result = self.say()
        self.assertEqual(result.deliveries, 3)
        self.assertEqual(_targets(result.event_id), {"mail": "ann@example.com", "crm": "crm-7", "wa": "+1666"})
        self.assertEqual(set(Delivery.objects.values_list("status", flat=True)), {DeliveryStatus.PENDING})

    def test_same_channel_at_another_address_receives_but_the_source_does_not(self) -> None:
        services.channel_attach(room_id=self.room_id, channel_id="sms-in", address="+1777")
        result = self.say()
        self.assertEqual(Delivery.objects.filter(event_id=result.event_id, channel_id="sms-in").get().recipient, "+1777")
        self.assertFalse(Delivery.objects.filter(recipient="+1555").exists())

    def test_socket_and_intelligence_bindings_get_no_delivery_row(self) -> None:
        make_channel("web", channel_type=ChannelType.WEBSOCKET, provider="")
        make_channel("agent", channel_type=ChannelType.AI, category=ChannelCategory.INTELLIGENCE, provider="")
        services.channel_attach(room_id=self.room_id, channel_id="web", address="visitor-1")
        services.channel_attach(room_id=self.room_id, channel_id="agent")
        result = self.say()
        self.assertEqual(set(_targets(result.event_id)), {"mail", "crm", "wa"})

    def test_disabled_target_channel_gets_nothing(self) -> None:
        crm = Channel.objects.get(pk="crm")
        crm.enabled = False
        crm.save(update_fields=["enabled"])
        self.assertEqual(set(_targets(self.say().event_id)), {"mail", "wa"})

    def test_bookkeeping_events_are_internal_and_delivered_to_nobody(self) -> None:
        make_channel("extra", channel_type=ChannelType.EMAIL, provider="")
        services.channel_attach(room_id=self.room_id, channel_id="extra", address="x@example.com")
        services.channel_mute(room_id=self.room_id, channel_id="extra")
        self.assertFalse(Delivery.objects.exists())


class AccessTests(FanoutTestCase):
    def set_access(self, channel_id: str, access: str) -> None:
        services.channel_set_access(room_id=self.room_id, channel_id=channel_id, access=access)

    def test_read_only_target_receives(self) -> None:
        self.set_access("mail", Access.READ_ONLY)
        self.assertIn("mail", _targets(self.say().event_id))

    def test_write_only_and_none_targets_receive_nothing(self) -> None:
        self.set_access("mail", Access.WRITE_ONLY)
        self.set_access("crm", Access.NONE)
        self.assertEqual(set(_targets(self.say().event_id)), {"wa"})

    def test_write_only_source_speaks(self) -> None:
        self.set_access("sms-in", Access.WRITE_ONLY)
        result = self.say()
        self.assertEqual((result.status, result.deliveries), ("stored", 3))

    def test_read_only_and_none_sources_are_blocked(self) -> None:
        for access in (Access.READ_ONLY, Access.NONE):
            with self.subTest(access=access):
                self.set_access("sms-in", access)
                result = self.say()
                self.assertEqual(result.status, "blocked")
                self.assertEqual(result.event.status, EventStatus.BLOCKED)
                self.assertEqual(result.event.blocked_by, f"access:{access}")
                self.assertEqual(result.deliveries, 0)
                self.assertFalse(Delivery.objects.filter(event_id=result.event_id).exists())

    def test_read_write_is_the_default_both_ways(self) -> None:
        services.channel_set_access(room_id=self.room_id, channel_id="mail", access=Access.READ_WRITE)
        reply = send("mail", "ann@example.com", "thanks")
        self.assertEqual(set(_targets(reply.event_id)), {"sms-in", "crm", "wa"})

    def test_unknown_access_is_refused(self) -> None:
        from rooms.errors import InvalidInput

        with self.assertRaises(InvalidInput):
            self.set_access("mail", "admin")


class MuteTests(FanoutTestCase):
    def test_muted_target_receives_nothing_until_unmuted(self) -> None:
        services.channel_mute(room_id=self.room_id, channel_id="mail")
        self.assertEqual(set(_targets(self.say().event_id)), {"crm", "wa"})
        services.channel_unmute(room_id=self.room_id, channel_id="mail")
        self.assertEqual(set(_targets(self.say().event_id)), {"mail", "crm", "wa"})

    def test_muted_source_is_blocked(self) -> None:
        services.channel_mute(room_id=self.room_id, channel_id="sms-in")
        result = self.say()
        self.assertEqual((result.status, result.event.blocked_by, result.deliveries), ("blocked", "muted", 0))

    def test_a_note_from_a_muted_or_read_only_binding_is_kept_internal(self) -> None:
        services.channel_mute(room_id=self.room_id, channel_id="sms-in")
        services.channel_set_access(room_id=self.room_id, channel_id="sms-in", access=Access.READ_ONLY)
        result = self.say("internal remark", event_type=EventType.NOTE)
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.event.visibility, Visibility.INTERNAL)
        self.assertEqual(result.deliveries, 0)


class VisibilityTests(FanoutTestCase):
    def setUp(self) -> None:
        super().setUp()
        make_channel("agent", channel_type=ChannelType.AI, category=ChannelCategory.INTELLIGENCE, provider="")
        services.channel_attach(room_id=self.room_id, channel_id="agent")

    def test_all_is_the_default(self) -> None:
        result = self.say()
        self.assertEqual(result.event.visibility, Visibility.ALL)
        self.assertEqual(result.deliveries, 3)

    def test_transport_reaches_transports(self) -> None:
        self.assertEqual(set(_targets(self.say(visibility=Visibility.TRANSPORT).event_id)), {"mail", "crm", "wa"})

    def test_intelligence_none_and_internal_reach_no_transport(self) -> None:
        for visibility in (Visibility.INTELLIGENCE, Visibility.NONE, Visibility.INTERNAL):
            with self.subTest(visibility=visibility):
                result = self.say(visibility=visibility)
                self.assertEqual((result.status, result.deliveries), ("stored", 0))

    def test_a_list_of_channel_ids_reaches_exactly_those(self) -> None:
        result = self.say(visibility="mail, wa")
        self.assertEqual(set(_targets(result.event_id)), {"mail", "wa"})

    def test_a_note_is_internal(self) -> None:
        result = self.say(event_type=EventType.NOTE)
        self.assertEqual((result.event.visibility, result.deliveries), (Visibility.INTERNAL, 0))

    def test_the_source_bindings_visibility_is_the_default_for_what_it_sends(self) -> None:
        make_channel("whisper", channel_type=ChannelType.EMAIL, provider="")
        services.channel_attach(room_id=self.room_id, channel_id="whisper", address="sup@example.com", visibility="crm")
        result = send("whisper", "sup@example.com", "for the CRM only")
        self.assertEqual(result.event.visibility, "crm")
        self.assertEqual(set(_targets(result.event_id)), {"crm"})


class IntelligenceTargetTests(TestCase):
    """Intelligence bindings get no row; their handler is called after commit, per visibility."""

    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        make_channel("agent", channel_type=ChannelType.AI, category=ChannelCategory.INTELLIGENCE, provider="")
        self.room_id = send("sms-in", "+1555").room_id
        self.agent_binding = services.channel_attach(room_id=self.room_id, channel_id="agent")
        self.calls: list[tuple[str, int]] = []
        previous = registries.intelligence_handler(ChannelType.AI)
        registries.register_intelligence_handler(
            ChannelType.AI, lambda event_id, binding_id: self.calls.append((event_id, binding_id))
        )
        if previous is not None:
            self.addCleanup(registries.register_intelligence_handler, ChannelType.AI, previous)
        else:
            self.addCleanup(registries._intelligence_handlers.pop, ChannelType.AI, None)

    def test_agent_is_handed_the_event_after_commit(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+1555", "question")
            self.assertEqual(self.calls, [])
        self.assertEqual(self.calls, [(result.event_id, self.agent_binding.id)])
        self.assertFalse(Delivery.objects.exists())

    def test_agent_does_not_see_transport_only_or_blocked_events_or_its_own(self) -> None:
        with FakeHTTPServer() as sms_provider:
            sms = Channel.objects.get(pk="sms-in")
            sms.provider, sms.config = "http", {"url": sms_provider.url}
            sms.save()
            with self.captureOnCommitCallbacks(execute=True):
                send("sms-in", "+1555", visibility=Visibility.TRANSPORT)
                send("sms-in", "+1555", chain_depth=9)
                answer = send("agent", "", "my answer", room_id=self.room_id, chain_depth=1)
        self.assertEqual(self.calls, [])
        self.assertEqual([r.json()["text"] for r in sms_provider.requests], ["my answer"])
        self.assertEqual(answer.event.source_participant.role, "agent")

    def test_muted_agent_is_not_asked(self) -> None:
        services.channel_mute(room_id=self.room_id, channel_id="agent")
        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555")
        self.assertEqual(self.calls, [])


class TranscodedPerTargetTests(TestCase):
    def setUp(self) -> None:
        for channel_id, channel_type in (("web-in", ChannelType.API), ("sms", ChannelType.SMS), ("mail", ChannelType.EMAIL)):
            make_channel(channel_id, channel_type=channel_type, provider="")
        make_channel("wa", channel_type=ChannelType.WHATSAPP, provider="")
        make_channel(
            "tiny", channel_type=ChannelType.WEBHOOK, provider="", capabilities={"media_types": ["text"], "max_length": 11}
        )
        self.room_id = services.room_create().id
        addresses = {"sms": "+15550110", "mail": "to@example.com", "wa": "+15550111", "tiny": "to-tiny"}
        for channel_id, address in addresses.items():
            services.channel_attach(room_id=self.room_id, channel_id=channel_id, address=address)

    def contents(self, content: dict) -> dict[str, dict]:
        result = send("web-in", "api:1", room_id=self.room_id, content=content)
        return dict(Delivery.objects.filter(event_id=result.event_id).values_list("channel_id", "content"))

    def test_rich_html_is_kept_where_rich_is_carried_and_flattened_elsewhere(self) -> None:
        got = self.contents(RICH)
        self.assertEqual(got["mail"], RICH)
        self.assertEqual(got["wa"], RICH)
        self.assertEqual(got["sms"], {"type": "text", "body": "Your order #42 has shipped"})
        self.assertEqual(got["tiny"], {"type": "text", "body": "Your order…"})

    def test_location_is_text_where_it_cannot_be_carried(self) -> None:
        location = {"type": "location", "latitude": 48.8584, "longitude": 2.2945, "label": "Eiffel Tower"}
        got = self.contents(location)
        self.assertEqual(got["wa"], location)
        self.assertEqual(got["sms"], {"type": "text", "body": "[Location: Eiffel Tower (48.858400, 2.294500)]"})
        self.assertEqual(got["mail"], got["sms"])

    def test_long_text_is_cut_for_sms_only(self) -> None:
        body = "x" * 2000
        got = self.contents({"type": "text", "body": body})
        self.assertEqual(len(got["sms"]["body"]), 1600)
        self.assertTrue(got["sms"]["body"].endswith("..."))
        self.assertEqual(got["mail"]["body"], body)

    def test_the_stored_event_keeps_the_original(self) -> None:
        from rooms.models import RoomEvent

        result = send("web-in", "api:1", room_id=self.room_id, content=RICH)
        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).content, RICH)
