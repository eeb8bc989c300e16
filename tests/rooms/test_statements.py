"""The inbound path's hand-written SQL names its tables, columns and statuses from the models and enums.

Each statement is built with a quoting function that marks every name it
quotes, so a test can see which names came from ``_meta`` and that nothing
else in the text is a name: a literal table or column typed back in fails
here, not at run time after a migration renames it.
"""

from __future__ import annotations

import re

from django.db import connection, models
from django.test import SimpleTestCase, TestCase
from django.test.utils import isolate_apps
from django.utils import timezone

from rooms import services
from rooms.enums import ConversationStatus, RoomStatus
from rooms.inbound import statements
from rooms.models import Room, RoomEvent
from tests.rooms.fixtures import send
from tests.support import make_channel

_KEYWORDS = {"UPDATE", "SET", "CASE", "WHEN", "THEN", "ELSE", "END", "NULL", "WHERE", "AND", "IN", "RETURNING", "SELECT", "FROM"}
_ROOM_FIELDS = (
    "id",
    "status",
    "last_seq",
    "routing_version",
    "updated_at",
    "last_activity_at",
    "paused_at",
    "conversation_status",
    "snoozed_until",
)
_EVENT_FIELDS = ("id", "source_channel", "idempotency_key", "provider_message_id")


def _marked(name: str) -> str:
    return f"<{name}>"


def _parts(sql: str) -> tuple[set[str], set[str], set[str]]:
    """(the names quoted, the string literals, any other word that is not an SQL keyword) of ``sql``."""
    names = set(re.findall(r"<([^>]*)>", sql))
    rest = re.sub(r"<[^>]*>", " ", sql).replace("%s", " ")
    literals = set(re.findall(r"'([^']*)'", rest))
    rest = re.sub(r"'[^']*'", " ", rest)
    return names, literals, set(re.findall(r"[A-Za-z_]\w*", rest)) - _KEYWORDS


def _probe(sql: statements._HotPathSql, key: str) -> str:
    return sql.probe_prefix[key] + "%s)"


def _columns(model: type[models.Model], fields: tuple[str, ...]) -> set[str]:
    return {model._meta.get_field(name).column for name in fields}


class BuiltFromTheModelsTests(SimpleTestCase):
    def test_take_seq_names_the_room_table_and_its_columns_and_nothing_else(self) -> None:
        names, literals, other = _parts(statements._build_sql(Room, RoomEvent, _marked).take_seq)
        self.assertEqual(names, {Room._meta.db_table} | _columns(Room, _ROOM_FIELDS))
        self.assertEqual(literals, {RoomStatus.ACTIVE.value, RoomStatus.PAUSED.value, ConversationStatus.OPEN.value})
        self.assertEqual(other, set(), "a name written into the SQL instead of read from the model")

    def test_each_duplicate_probe_names_the_event_table_and_its_key_column(self) -> None:
        sql = statements._build_sql(Room, RoomEvent, _marked)
        for key in ("idempotency_key", "provider_message_id"):
            with self.subTest(key=key):
                names, literals, other = _parts(_probe(sql, key))
                self.assertEqual(names, {RoomEvent._meta.db_table} | _columns(RoomEvent, ("id", "source_channel", key)))
                self.assertEqual((literals, other), (set(), set()))

    @isolate_apps("rooms")
    def test_renamed_tables_and_columns_are_followed(self) -> None:
        class MovedRoom(models.Model):
            id = models.CharField(primary_key=True, max_length=32, db_column="moved_id")
            status = models.CharField(max_length=16, db_column="moved_status")
            last_seq = models.BigIntegerField(db_column="moved_last_seq")
            routing_version = models.BigIntegerField(db_column="moved_routing_version")
            updated_at = models.DateTimeField(db_column="moved_updated_at")
            last_activity_at = models.DateTimeField(db_column="moved_last_activity_at")
            paused_at = models.DateTimeField(db_column="moved_paused_at")
            conversation_status = models.CharField(max_length=16, db_column="moved_conversation_status")
            snoozed_until = models.DateTimeField(db_column="moved_snoozed_until")

            class Meta:
                app_label = "rooms"
                db_table = "moved_room"

        class MovedEvent(models.Model):
            id = models.CharField(primary_key=True, max_length=32, db_column="moved_id")
            source_channel = models.CharField(max_length=64, db_column="moved_source_channel")
            idempotency_key = models.CharField(max_length=255, db_column="moved_idempotency_key")
            provider_message_id = models.CharField(max_length=255, db_column="moved_provider_message_id")

            class Meta:
                app_label = "rooms"
                db_table = "moved_event"

        sql = statements._build_sql(MovedRoom, MovedEvent, _marked)
        room_names, _, _ = _parts(sql.take_seq)
        self.assertEqual(room_names, {"moved_room"} | {f"moved_{name}" for name in _ROOM_FIELDS})
        for key in ("idempotency_key", "provider_message_id"):
            event_names, _, _ = _parts(_probe(sql, key))
            self.assertEqual(event_names, {"moved_event", "moved_id", "moved_source_channel", f"moved_{key}"})

    def test_the_module_runs_the_statements_built_for_this_database(self) -> None:
        self.assertEqual(statements._SQL, statements._build_sql(Room, RoomEvent, connection.ops.quote_name))


class RunTests(TestCase):
    """The built statements against the real tables: the seq, the statuses, the probes."""

    def setUp(self) -> None:
        make_channel("sms-in")
        self.first = send("sms-in", "+15550001", "hello", provider_message_id="SM1")
        self.room_id = self.first.room_id

    def test_taking_a_seq_wakes_a_paused_room_and_a_closed_room_gives_none(self) -> None:
        services.room_pause(room_id=self.room_id)
        last_seq = Room.objects.get(pk=self.room_id).last_seq
        self.assertEqual(statements.take_seq(self.room_id, timezone.now())[0], last_seq + 1)
        room = Room.objects.get(pk=self.room_id)
        self.assertEqual((room.status, room.paused_at, room.last_seq), (RoomStatus.ACTIVE, None, last_seq + 1))
        services.room_close(room_id=self.room_id)
        self.assertIsNone(statements.take_seq(self.room_id, timezone.now()))

    def test_probe_and_take_seqs_finds_a_stored_key_and_grants_ranges(self) -> None:
        now = timezone.now()
        stored = [("sms-in", "provider_message_id", "SM1")]
        self.assertEqual(statements.probe_and_take_seqs(stored, {self.room_id: 1}, now)[0], self.first.event_id)
        last_seq = Room.objects.get(pk=self.room_id).last_seq
        new = [("sms-in", "provider_message_id", "SM2"), ("sms-in", "idempotency_key", "k")]
        self.assertEqual(
            statements.probe_and_take_seqs(new, {self.room_id: 3}, now),
            (None, {self.room_id: (last_seq + 3, Room.objects.get(pk=self.room_id).routing_version)}),
        )
        self.assertEqual(statements.find_duplicate_id([*new, ("sms-in", "provider_message_id", "SM1")]), self.first.event_id)
        self.assertIsNone(statements.find_duplicate_id(new))
        self.assertFalse(RoomEvent.objects.filter(provider_message_id="SM2").exists())
