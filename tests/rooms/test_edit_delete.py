"""Edit and delete events: only the author (or an operator), only a live message of the same room."""

from __future__ import annotations

from django.test import TestCase

from rooms import services
from rooms.enums import ChannelType, EventStatus, EventType
from rooms.errors import Conflict, Forbidden, InvalidInput, NotFound
from rooms.hooks import HookResult, HookTrigger
from rooms.models import Delivery, RoomEvent
from tests.rooms.fixtures import row_counts, send, use_hook
from tests.support import make_channel


def edit_of(target_id: str, body: str = "fixed") -> dict:
    return {"type": "edit", "target_event_id": target_id, "new_content": {"type": "text", "body": body}}


def delete_of(target_id: str) -> dict:
    return {"type": "delete", "target_event_id": target_id}


class EditDeleteTestCase(TestCase):
    """Ann opened the room by SMS; Bob is attached on the same channel; mail is a read-only observer."""

    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        self.original = send("sms-in", "+15550101", "helo")
        self.room_id = self.original.room_id
        services.channel_attach(room_id=self.room_id, channel_id="sms-in", address="+15550102")
        services.channel_attach(room_id=self.room_id, channel_id="mail", address="obs@example.com", access="read_only")

    def target(self) -> RoomEvent:
        return RoomEvent.objects.get(pk=self.original.event_id)

    def edit(self, sender: str = "+15550101", target_id: str | None = None, **fields):
        return send("sms-in", sender, content=edit_of(target_id or self.original.event_id), event_type=EventType.EDIT, **fields)

    def delete(self, sender: str = "+15550101", target_id: str | None = None, **fields):
        return send(
            "sms-in", sender, content=delete_of(target_id or self.original.event_id), event_type=EventType.DELETE, **fields
        )


class AuthorTests(EditDeleteTestCase):
    def test_author_edits_their_message(self) -> None:
        result = self.edit()
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.event.type, EventType.EDIT)
        target = self.target()
        self.assertIsNotNone(target.edited_at)
        self.assertIsNone(target.deleted_at)
        self.assertEqual(target.content, {"type": "text", "body": "helo"}, "the original stays in the log")
        self.assertGreaterEqual(target.edited_at, target.created_at)

    def test_the_edit_is_fanned_out_in_each_targets_terms(self) -> None:
        result = self.edit()
        got = dict(Delivery.objects.filter(event_id=result.event_id).values_list("recipient", "content"))
        self.assertEqual(
            got,
            {
                "+15550102": {"type": "text", "body": "[Edited] fixed"},
                "obs@example.com": {"type": "text", "body": "[Edited] fixed"},
            },
        )

    def test_author_deletes_their_message(self) -> None:
        result = self.delete()
        self.assertEqual((result.status, result.event.type), ("stored", EventType.DELETE))
        self.assertIsNotNone(self.target().deleted_at)
        self.assertEqual(
            Delivery.objects.filter(event_id=result.event_id, recipient="+15550102").get().content["body"], "[Message deleted]"
        )

    def test_a_message_can_be_edited_twice(self) -> None:
        self.edit()
        first = self.target().edited_at
        self.edit()
        self.assertGreaterEqual(self.target().edited_at, first)

    def test_a_deleted_message_cannot_be_edited_or_deleted_again(self) -> None:
        self.delete()
        before = row_counts()
        for action in (self.edit, self.delete):
            with self.subTest(action.__name__), self.assertRaises(Conflict) as caught:
                action()
            self.assertEqual(caught.exception.code, "not_editable")
        self.assertEqual(row_counts(), before)

    def test_author_known_by_participant_id(self) -> None:
        result = send(
            "sms-in",
            "",
            room_id=self.room_id,
            participant_id=self.original.event.source_participant_id,
            content=delete_of(self.original.event_id),
            event_type=EventType.DELETE,
        )
        self.assertEqual(result.status, "stored")
        self.assertIsNotNone(self.target().deleted_at)


class NotTheAuthorTests(EditDeleteTestCase):
    def test_another_participant_cannot_edit_or_delete(self) -> None:
        last_seq = self.original.seq + 2  # two attach events
        before = row_counts()
        for action in (self.edit, self.delete):
            with self.subTest(action.__name__), self.assertRaises(Forbidden) as caught:
                action(sender="+15550102")
            self.assertEqual(caught.exception.code, "not_author")
        target = self.target()
        self.assertIsNone(target.edited_at)
        self.assertIsNone(target.deleted_at)
        self.assertEqual(row_counts(), before)
        self.assertEqual(send("sms-in", "+15550102", "hi").seq, last_seq + 1, "the refused edits took no seq")

    def test_an_operator_on_the_console_may_delete_any_message(self) -> None:
        make_channel("console", channel_type=ChannelType.CONSOLE, provider="")
        result = send("console", "staff:1", room_id=self.room_id, content=delete_of(self.original.event_id), event_type="delete")
        self.assertEqual(result.status, "stored")
        self.assertIsNotNone(self.target().deleted_at)

    def test_a_system_event_without_a_participant_cannot_edit(self) -> None:
        with self.assertRaises(Forbidden):
            send(None, room_id=self.room_id, content=edit_of(self.original.event_id), event_type=EventType.EDIT)


class TargetTests(EditDeleteTestCase):
    def test_unknown_target(self) -> None:
        before = row_counts()
        with self.assertRaises(NotFound) as caught:
            self.edit(target_id="no-such-event")
        self.assertEqual(caught.exception.code, "unknown_event")
        self.assertEqual(row_counts(), before)

    def test_target_in_another_room(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        elsewhere = send("api", "api:1", "other room", room_id=services.room_create().id)
        self.assertNotEqual(elsewhere.room_id, self.room_id)
        with self.assertRaises(NotFound):
            self.edit(target_id=elsewhere.event_id)
        self.assertIsNone(RoomEvent.objects.get(pk=elsewhere.event_id).edited_at)

    def test_only_a_message_can_be_edited(self) -> None:
        attached = RoomEvent.objects.get(room_id=self.room_id, type=EventType.CHANNEL_ATTACHED, seq=2)
        with self.assertRaises(Conflict):
            make_channel("console", channel_type=ChannelType.CONSOLE, provider="")
            send("console", "staff:1", room_id=self.room_id, content=delete_of(attached.id), event_type="delete")
        self.assertIsNone(RoomEvent.objects.get(pk=attached.id).deleted_at)

    def test_a_first_message_that_edits_something_opens_no_room(self) -> None:
        # A stranger's first message belongs to a new room, where the target is not.
        before = row_counts()
        with self.assertRaises(NotFound):
            self.edit(sender="+1stranger")
        self.assertEqual(row_counts(), before)


class ShapeTests(EditDeleteTestCase):
    def test_edit_event_needs_edit_content(self) -> None:
        before = row_counts()
        cases = {
            "text": ({"type": "text", "body": "x"}, EventType.EDIT),
            "delete content on an edit": (delete_of(self.original.event_id), EventType.EDIT),
            "edit content on a delete": (edit_of(self.original.event_id), EventType.DELETE),
            "edit content on a plain message": (edit_of(self.original.event_id), EventType.MESSAGE),
            "delete content on a plain message": (delete_of(self.original.event_id), EventType.MESSAGE),
        }
        for label, (content, event_type) in cases.items():
            with self.subTest(label), self.assertRaises(InvalidInput):
                send("sms-in", "+15550101", content=content, event_type=event_type)
        target = self.target()
        self.assertEqual((target.edited_at, target.deleted_at), (None, None))
        self.assertEqual(row_counts(), before)

    def test_a_blocked_edit_changes_nothing(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("frozen") if e.type == "edit" else None)
        result = self.edit()
        self.assertEqual(result.event.status, EventStatus.BLOCKED)
        self.assertIsNone(self.target().edited_at)
