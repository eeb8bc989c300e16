"""Phone-number addresses are E.164, in and out, on every phone-number channel type."""

from __future__ import annotations

from django.test import SimpleTestCase, TestCase

from rooms import services
from rooms.addresses import InvalidPhoneNumber, normalize_phone_address
from rooms.console.actions import console_send_test_message
from rooms.enums import ChannelType
from rooms.models import ChannelBinding, Delivery, Observation, Participant, Room, RoomEvent
from tests.console.helpers import operator
from tests.rooms.fixtures import row_counts, send
from tests.support import make_channel, post_signed


class NormalizeTests(SimpleTestCase):
    def test_one_number_however_it_is_written(self) -> None:
        for raw, region in [
            ("+1 555-0001", None),
            ("(555) 0001", "US"),
            ("+15550001", None),
            ("15550001", None),  # WhatsApp's wa_id: international digits without the +
            ("whatsapp:+15550001", None),
            ("tel:+1-555-0001", None),
            (" +1 (555) 0001 ", "GB"),  # an explicit country code wins over the region
        ]:
            with self.subTest(raw=raw, region=region):
                self.assertEqual(normalize_phone_address(raw, default_region=region), "+15550001")

    def test_national_numbers_need_the_region(self) -> None:
        self.assertEqual(normalize_phone_address("020 7946 0958", default_region="GB"), "+442079460958")
        self.assertEqual(normalize_phone_address("+44 20 7946 0958"), "+442079460958")

    def test_short_codes_and_sender_ids_are_kept(self) -> None:
        self.assertEqual(normalize_phone_address("72727"), "72727")
        self.assertEqual(normalize_phone_address("72727", default_region="US"), "72727")
        self.assertEqual(normalize_phone_address("ACME Bank"), "ACME Bank")

    def test_what_is_no_number_is_refused(self) -> None:
        for raw in ["hello world!", "+999 123", "+1 555 0001 0002 0003 0004", "", "call me maybe?"]:
            with self.subTest(raw=raw):
                with self.assertRaises(InvalidPhoneNumber) as caught:
                    normalize_phone_address(raw)
                self.assertEqual((caught.exception.status, caught.exception.code), (400, "invalid_phone_number"))


class InboundNormalizationTests(TestCase):
    def test_three_spellings_are_one_sender_and_one_room(self) -> None:
        for channel_type in (ChannelType.SMS, ChannelType.RCS, ChannelType.WHATSAPP, ChannelType.VOICE):
            with self.subTest(channel_type):
                channel_id = f"{channel_type}-in"
                make_channel(channel_id, channel_type=channel_type, provider="", config={"default_region": "US"})
                results = [send(channel_id, raw, f"via {raw}") for raw in ("+1 555-0001", "(555) 0001", "+15550001")]
                self.assertEqual(len({r.room_id for r in results}), 1)
                self.assertEqual(Participant.objects.filter(channel_id=channel_id).get().address, "+15550001")
                self.assertEqual(ChannelBinding.objects.filter(channel_id=channel_id).get().address, "+15550001")

    def test_other_channel_types_keep_addresses_as_given(self) -> None:
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        result = send("mail", "Ann@Example.com", "hi")
        self.assertEqual(Participant.objects.get(pk=result.event.source_participant_id).address, "Ann@Example.com")

    def test_a_vendor_s_sender_that_is_no_number_is_kept_with_an_observation(self) -> None:
        make_channel("hook-sms", channel_type=ChannelType.SMS, secrets={"signing_secret": "s3cret"})
        response = post_signed(
            self.client, "/webhooks/hook-sms/", {"id": "m1", "sender": "not a number!", "text": "hi"}, "s3cret"
        )

        self.assertEqual(response.status_code, 200, response.content)
        event = RoomEvent.objects.get(pk=response.json()["event_id"])
        self.assertEqual(event.source_participant.address, "not a number!")
        obs = Observation.objects.get(kind="invalid_address")
        self.assertEqual((obs.room_id, obs.event_id, obs.data["sender"]), (event.room_id, event.id, "not a number!"))

    def test_a_webhook_s_numbers_are_stored_in_e164(self) -> None:
        make_channel("hook-sms", channel_type=ChannelType.SMS, secrets={"signing_secret": "s3cret"})
        first = post_signed(
            self.client, "/webhooks/hook-sms/", {"id": "m1", "sender": "+1 (555) 000-1234", "text": "a"}, "s3cret"
        )
        second = post_signed(self.client, "/webhooks/hook-sms/", {"id": "m2", "sender": "15550001234", "text": "b"}, "s3cret")
        self.assertEqual(first.json()["room_id"], second.json()["room_id"])
        self.assertFalse(Observation.objects.filter(kind="invalid_address").exists())


class OutboundNormalizationTests(TestCase):
    def setUp(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        make_channel("sms", channel_type=ChannelType.SMS, provider="", config={"default_region": "US"})

    def test_an_attached_recipient_is_stored_and_sent_to_in_e164(self) -> None:
        room = services.room_create()
        services.channel_attach(room_id=room.id, channel_id="sms", address="(555) 000-1234")
        result = send("api", "api:1", room_id=room.id, text="hello")
        self.assertEqual(Delivery.objects.get(event_id=result.event_id).recipient, "+15550001234")
        # The sender answering from the same number lands in that room.
        self.assertEqual(send("sms", "+1 555 000 1234", "hi back").room_id, room.id)

    def test_an_invalid_recipient_is_a_400_and_changes_nothing(self) -> None:
        room = services.room_create()
        before = row_counts()
        with self.assertRaises(InvalidPhoneNumber):
            services.channel_attach(room_id=room.id, channel_id="sms", address="call me maybe")
        self.assertEqual(row_counts(), before)

    def test_the_console_s_test_message_refuses_an_invalid_number(self) -> None:
        rooms_before = Room.objects.count()
        with self.assertRaises(InvalidPhoneNumber):
            console_send_test_message(user=operator(), channel_id="sms", recipient="not-a-number!")
        self.assertEqual(Room.objects.count(), rooms_before)


class IdentityAddressAdminTests(TestCase):
    def add_identity(self, identity_id: str, name: str, addresses: list[tuple[str, str]]):
        """The admin's "add identity" form, posted by a superuser, with one inline row per address."""
        from django.contrib.auth import get_user_model

        admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
        self.client.force_login(admin_user)
        form = {"id": identity_id, "display_name": name, "metadata": "{}", "addresses-INITIAL_FORMS": "0"}
        form["addresses-TOTAL_FORMS"] = str(len(addresses))
        for i, (channel_type, address) in enumerate(addresses):
            form[f"addresses-{i}-channel_type"] = channel_type
            form[f"addresses-{i}-address"] = address
        return self.client.post("/admin/rooms/identity/add/", form)

    def test_an_identity_s_phone_address_is_stored_as_senders_are_looked_up(self) -> None:
        from rooms.models import Identity

        response = self.add_identity("ann", "Ann", [("sms", "+1 (555) 000-1234"), ("email", "Ann@Example.com")])
        self.assertEqual(response.status_code, 302, response.content[:2000])
        identity = Identity.objects.get(display_name="Ann")
        self.assertEqual(
            sorted(identity.addresses.values_list("channel_type", "address")),
            [("email", "Ann@Example.com"), ("sms", "+15550001234")],
        )
        # And a message from that number, however written, is Ann's.
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="", config={"default_region": "US"})
        result = send("sms-in", "(555) 000-1234", "hi")
        self.assertEqual(Participant.objects.get(pk=result.event.source_participant_id).identity_id, identity.id)

    def test_an_address_that_is_no_number_is_a_form_error(self) -> None:
        response = self.add_identity("bob", "Bob", [("whatsapp", "not a number!")])
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "is not a phone number")
