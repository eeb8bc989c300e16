"""Identity: the address book, and the identity hooks deciding identify / challenge / reject."""

from __future__ import annotations

from django.test import TestCase

from rooms import services
from rooms.enums import ChannelType, Direction, EventStatus, EventType, IdentificationStatus
from rooms.hooks import HookResult, HookTrigger
from rooms.inbound.identity import IdentityResult
from rooms.models import Delivery, Identity, IdentityAddress, Participant, Room, RoomEvent
from tests.rooms.fixtures import row_counts, send, use_hook
from tests.support import FakeHTTPServer, make_channel


def _identity(name: str, channel_type: str = ChannelType.SMS, address: str = "+1555") -> Identity:
    identity = Identity.objects.create(display_name=name)
    IdentityAddress.objects.create(identity=identity, channel_type=channel_type, address=address)
    return identity


class UnknownSenderTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_without_hooks_the_message_is_stored_from_an_unknown_participant(self) -> None:
        result = send("sms-in", "+1555", display_name="Maybe Ann")
        self.assertEqual(result.status, "stored")
        participant = result.event.source_participant
        self.assertEqual(participant.identification, IdentificationStatus.UNKNOWN)
        self.assertIsNone(participant.identity_id)
        self.assertEqual(participant.display_name, "Maybe Ann")

    def test_hook_sees_the_result_and_the_address_and_identifies(self) -> None:
        ann = Identity.objects.create(display_name="Ann (CRM)")
        seen: list[tuple] = []

        def lookup(result, ctx):
            seen.append((type(result), result.status, ctx.channel_id, ctx.channel_type, ctx.extra["address"], ctx.room_id))
            return HookResult.identify(ann.id, display_name="Ann")

        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lookup)
        result = send("sms-in", "+1555")

        self.assertEqual(seen, [(IdentityResult, IdentificationStatus.UNKNOWN, "sms-in", "sms", "+1555", None)])
        participant = result.event.source_participant
        self.assertEqual(participant.identity_id, ann.id)
        self.assertEqual(participant.identification, IdentificationStatus.IDENTIFIED)
        self.assertEqual(participant.display_name, "Ann")
        self.assertEqual(result.event.status, EventStatus.DELIVERED)

    def test_identify_fires_on_participant_identified_after_commit(self) -> None:
        ann = Identity.objects.create(display_name="Ann")
        identified: list[tuple[str, str | None]] = []
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda result, ctx: HookResult.identify(ann.id))
        use_hook(self, HookTrigger.ON_PARTICIPANT_IDENTIFIED, lambda p, ctx: identified.append((p.id, p.identity_id)))

        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+1555")
            self.assertEqual(identified, [])
        self.assertEqual(identified, [(result.event.source_participant_id, ann.id)])

    def test_identify_with_an_unknown_identity_leaves_the_sender_unknown(self) -> None:
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda result, ctx: HookResult.identify("no-such-identity"))
        participant = send("sms-in", "+1555").event.source_participant
        self.assertEqual(participant.identification, IdentificationStatus.UNKNOWN)
        self.assertIsNone(participant.identity_id)

    def test_first_decisive_hook_by_priority_wins(self) -> None:
        ann = Identity.objects.create(display_name="Ann")
        bob = Identity.objects.create(display_name="Bob")
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.identify(bob.id), priority=20)
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.allow(), priority=0)
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.identify(ann.id), priority=10)
        later: list[str] = []
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: later.append("asked"), priority=15)
        self.assertEqual(send("sms-in", "+1555").event.source_participant.identity_id, ann.id)
        self.assertEqual(later, [], "no hook is asked once one has decided")

    def test_hook_filtered_to_another_channel_type_is_not_asked(self) -> None:
        make_channel("mail", channel_type=ChannelType.EMAIL)
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.reject(), channel_types={"email"})
        self.assertEqual(send("sms-in", "+1555").status, "stored")
        self.assertEqual(send("mail", "x@example.com").status, "rejected")

    def test_known_participant_is_not_resolved_again(self) -> None:
        calls: list[str] = []

        def unknown(result, ctx):
            calls.append(ctx.extra["address"])
            return HookResult.allow()

        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, unknown)
        send("sms-in", "+1555")
        send("sms-in", "+1555")
        self.assertEqual(calls, ["+1555"])


class RejectTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("api", channel_type=ChannelType.API, provider="")

    def test_reject_stores_nothing_at_all_not_even_a_room(self) -> None:
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.reject("not a customer"))
        created: list[str] = []
        use_hook(self, HookTrigger.ON_ROOM_CREATED, lambda room, ctx: created.append(room.id))
        before = row_counts()

        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            result = send("sms-in", "+1555", provider_message_id="SM1")

        self.assertEqual(result.status, "rejected")
        self.assertEqual(result.reason, "not a customer")
        self.assertIsNone(result.event)
        self.assertIsNone(result.room_id)
        self.assertEqual(row_counts(), before)
        self.assertEqual(callbacks, [])
        self.assertEqual(created, [])

    def test_reject_in_an_existing_room_leaves_it_untouched(self) -> None:
        room = services.room_create()
        last_seq = Room.objects.get(pk=room.id).last_seq
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.reject())
        before = row_counts()

        result = send("api", "api:1:mallory", room_id=room.id)

        self.assertEqual((result.status, result.room_id, result.reason), ("rejected", room.id, "identity_rejected"))
        self.assertEqual(row_counts(), before, "not even the self-attached binding survives")
        self.assertEqual(Room.objects.get(pk=room.id).last_seq, last_seq)

    def test_a_rejected_message_is_not_remembered_as_seen(self) -> None:
        name = use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.reject())
        self.assertEqual(send("sms-in", "+1555", provider_message_id="SM1").status, "rejected")
        from rooms import hooks

        hooks.registry.unregister(HookTrigger.ON_IDENTITY_UNKNOWN, name)
        self.assertEqual(send("sms-in", "+1555", provider_message_id="SM1").status, "stored")


class AmbiguousTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        self.ann = _identity("Ann")
        self.bob = _identity("Bob")

    def test_hook_gets_the_candidates_and_picks_one(self) -> None:
        offered: list[set[str]] = []

        def pick(result, ctx):
            offered.append({c.id for c in result.candidates})
            self.assertEqual(result.status, IdentificationStatus.AMBIGUOUS)
            return HookResult.identify(self.bob.id)

        use_hook(self, HookTrigger.ON_IDENTITY_AMBIGUOUS, pick)
        unknown_calls: list[object] = []
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: unknown_calls.append(r))

        participant = send("sms-in", "+1555").event.source_participant

        self.assertEqual(offered, [{self.ann.id, self.bob.id}])
        self.assertEqual(unknown_calls, [])
        self.assertEqual((participant.identity_id, participant.identification), (self.bob.id, IdentificationStatus.IDENTIFIED))
        self.assertEqual(participant.display_name, "Bob")

    def test_without_a_decision_the_sender_stays_ambiguous(self) -> None:
        participant = send("sms-in", "+1555").event.source_participant
        self.assertEqual(participant.identification, IdentificationStatus.AMBIGUOUS)
        self.assertIsNone(participant.identity_id)

    def test_reject_on_ambiguous(self) -> None:
        use_hook(self, HookTrigger.ON_IDENTITY_AMBIGUOUS, lambda r, c: HookResult.reject("ambiguous"))
        before = row_counts()
        self.assertEqual(send("sms-in", "+1555").status, "rejected")
        self.assertEqual(row_counts(), before)


class AddressBookTests(TestCase):
    def test_identified_sender_fires_on_participant_identified_and_no_identity_hook(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        ann = _identity("Ann")
        asked: list[object] = []
        identified: list[str | None] = []
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: asked.append(r))
        use_hook(self, HookTrigger.ON_IDENTITY_AMBIGUOUS, lambda r, c: asked.append(r))
        use_hook(self, HookTrigger.ON_PARTICIPANT_IDENTIFIED, lambda p, c: identified.append(p.identity_id))
        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555")
        self.assertEqual(asked, [])
        self.assertEqual(identified, [ann.id])

    def test_address_is_matched_per_channel_type(self) -> None:
        make_channel("wa", channel_type=ChannelType.WHATSAPP)
        _identity("Ann", channel_type=ChannelType.SMS)
        participant = send("wa", "+1555").event.source_participant
        self.assertEqual(participant.identification, IdentificationStatus.UNKNOWN)


class ChallengeTests(TestCase):
    def test_challenge_blocks_the_message_and_sends_the_prompt_to_the_sender_only(self) -> None:
        with FakeHTTPServer() as server:
            make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
            make_channel(
                "hook-in", channel_type=ChannelType.WEBHOOK, config={"url": server.url + "/out", "attach_on_create": ["mail"]}
            )
            use_hook(
                self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.challenge_sender("What is your account number?")
            )

            with self.captureOnCommitCallbacks(execute=True):
                result = send("hook-in", "+1555", "my balance?")

            self.assertEqual(result.status, "blocked")
            self.assertEqual(result.reason, "identity_challenge")
            participant = result.event.source_participant
            self.assertEqual(participant.identification, IdentificationStatus.CHALLENGED)

            prompt = RoomEvent.objects.get(room_id=result.room_id, seq=result.seq + 1)
            self.assertEqual(prompt.type, EventType.SYSTEM)
            self.assertEqual(prompt.direction, Direction.OUTBOUND)
            self.assertEqual(prompt.content, {"type": "text", "body": "What is your account number?"})
            self.assertEqual(prompt.visibility, "hook-in")
            self.assertEqual(prompt.parent_event_id, result.event_id)
            self.assertEqual(prompt.chain_depth, 1)
            self.assertEqual(Room.objects.get(pk=result.room_id).last_seq, prompt.seq)

            # Only the prompt is owed to anyone, and only to the sender.
            delivery = Delivery.objects.get()
            self.assertEqual((delivery.event_id, delivery.channel_id, delivery.recipient), (prompt.id, "hook-in", "+1555"))
            # And it is actually sent once the transaction commits, not left to the sweeper.
            self.assertEqual([r.path for r in server.requests], ["/out"])
            sent = server.requests[0].json()
            self.assertEqual(
                (sent["text"], sent["recipient"], sent["event_id"]), ("What is your account number?", "+1555", prompt.id)
            )

    def test_challenged_participant_is_kept(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.challenge_sender("Who is this?"))
        result = send("sms-in", "+1555")
        self.assertEqual(Participant.objects.get(room_id=result.room_id).identification, IdentificationStatus.CHALLENGED)
