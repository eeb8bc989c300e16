"""The inbound path's own SQL, in as few round trips as the database allows.

On PostgreSQL a round trip costs ~0.2 ms on this class of machine (more than
the statement itself), so statements that do not depend on each other's
results travel together in psycopg's pipeline mode: the duplicate probe rides
with the UPDATE that locks the room and takes its seq, and the event rides
with its Delivery rows. SQLite runs in-process, where a round trip is a
function call, so there each statement simply runs in turn.

The SQL is written by hand (the ORM cannot say ``UPDATE … RETURNING``), but
every table and column in it is read from the models' ``_meta`` and every
status from ``rooms.enums``, once, at import: a renamed field or table moves
the statements with it instead of breaking them at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.db import connection, models
from django.db.backends.utils import CursorWrapper

from rooms.enums import ConversationStatus, RoomStatus
from rooms.inbound.fast_insert import insert_plan_per_row, insert_rows
from rooms.models import Room, RoomEvent

# The statuses of a room that takes new events (as ``routing.route_message`` checks).
_OPEN = (RoomStatus.ACTIVE, RoomStatus.PAUSED)
# The fields an event may be deduplicated on (per source channel).
_KEY_FIELDS = ("idempotency_key", "provider_message_id")


@dataclass(frozen=True, slots=True)
class _HotPathSql:
    """The hot path's statements, built from the models for one database's quoting."""

    # Params: seq count, last_activity_at, updated_at, reopen (twice), room id. Returns (last_seq, routing_version).
    take_seq: str
    # By key field: a probe's text up to its ``IN (`` list; params: channel id, then the values.
    probe_prefix: dict[str, str]


def _build_sql(room: type[models.Model], event: type[models.Model], quote: Callable[[str], str]) -> _HotPathSql:
    """The statements for ``room`` (``Room``) and ``event`` (``RoomEvent``), names quoted by ``quote``."""

    def column(model: type[models.Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    def literal(value: str) -> str:
        # Our own enum values, never input: a value that is not a plain word
        # would need escaping this module does not do, so it is refused.
        if not value.isidentifier():
            raise ValueError(f"status {value!r} cannot be written into SQL as it is")
        return f"'{value}'"

    last_seq, status, paused_at = (column(room, name) for name in ("last_seq", "status", "paused_at"))
    conversation, snoozed = column(room, "conversation_status"), column(room, "snoozed_until")
    active, paused = literal(RoomStatus.ACTIVE.value), literal(RoomStatus.PAUSED.value)
    # A customer's message puts a pending, snoozed or resolved conversation back in the open inbox.
    take_seq = (
        f"UPDATE {quote(room._meta.db_table)} SET {last_seq} = {last_seq} + %s, "
        f"{column(room, 'last_activity_at')} = %s, {column(room, 'updated_at')} = %s, "
        f"{paused_at} = CASE WHEN {status} = {paused} THEN NULL ELSE {paused_at} END, "
        f"{status} = CASE WHEN {status} = {paused} THEN {active} ELSE {status} END, "
        f"{conversation} = CASE WHEN %s THEN {literal(ConversationStatus.OPEN.value)} ELSE {conversation} END, "
        f"{snoozed} = CASE WHEN %s THEN NULL ELSE {snoozed} END "
        f"WHERE {quote(room._meta.pk.column)} = %s AND {status} IN ({', '.join(literal(s.value) for s in _OPEN)}) "
        f"RETURNING {last_seq}, {column(room, 'routing_version')}"
    )
    probe_from = (
        f"SELECT {quote(event._meta.pk.column)} FROM {quote(event._meta.db_table)} "
        f"WHERE {column(event, 'source_channel')} = %s AND "
    )
    probe_prefix = {name: f"{probe_from}{column(event, name)} IN (" for name in _KEY_FIELDS}
    return _HotPathSql(take_seq, probe_prefix)


_SQL = _build_sql(Room, RoomEvent, connection.ops.quote_name)


def _pipelined() -> bool:
    return connection.vendor == "postgresql"


def _duplicate_probes(keys: Sequence[tuple[str, str, str]]) -> list[tuple[str, list]]:
    """One probe per (channel id, key field) among ``keys``, in the order they first appear.

    ``keys`` are (channel id, key field, value) triples; a message lists its
    idempotency key first, so for one message that key's match wins.
    """
    by_column: dict[tuple[str, str], list[str]] = {}
    for channel_id, field_name, value in keys:
        by_column.setdefault((channel_id, field_name), []).append(value)
    return [
        (_SQL.probe_prefix[field_name] + ", ".join(["%s"] * len(values)) + ")", [channel_id, *values])
        for (channel_id, field_name), values in by_column.items()
    ]


def find_duplicate_id(keys: Sequence[tuple[str, str, str]]) -> str | None:
    """The id of an event already stored under any of ``keys`` (channel id, key field, value), if any."""
    with connection.cursor() as cur:
        return _first_found(cur, _duplicate_probes(keys))


def _first_found(cur: CursorWrapper, probes: list[tuple[str, list]]) -> str | None:
    """Run ``probes`` in turn until one finds a row; that row's id."""
    for sql, params in probes:
        cur.execute(sql, params)
        row = cur.fetchone()
        if row is not None:
            return row[0]
    return None


def take_seq(room_id: str, now: datetime, *, reopen: bool = False) -> tuple[int, int] | None:
    """Lock the room row and hand out its next seq, in one statement (``reopen``: a customer wrote).

    ``UPDATE … RETURNING`` takes the same row lock ``select_for_update`` would,
    held to commit, so seqs are gapless and unique across processes; a paused
    room wakes up on a new message. Returns (seq, routing_version), or None if
    the room is not open.
    """
    with connection.cursor() as cur:
        cur.execute(_SQL.take_seq, [1, now, now, reopen, reopen, room_id])
        row = cur.fetchone()
    return (row[0], row[1]) if row is not None else None


def probe_and_take_seqs(
    keys: Sequence[tuple[str, str, str]], per_room: dict[str, int], now: datetime, reopen: frozenset[str] = frozenset()
) -> tuple[str | None, dict[str, tuple[int, int] | None]]:
    """For one message or a batch: an event already stored under any of ``keys``, and each room's seqs.

    Returns the id of such an event (or None) and, for each room, (its last
    seq, its routing_version) after ``per_room[room]`` seqs were taken, or None
    if the room is not open. Each room's seq moves up by its count in one
    UPDATE, rooms locked in id order so that two batches never wait on each
    other in a cycle; the conversations of the rooms in ``reopen`` (a customer
    wrote) go back to open. On PostgreSQL it is all one round trip, so if a duplicate
    turns up the seqs were taken too: the caller must roll the transaction
    back (duplicates are rare; one round trip for every message is not).
    """
    rooms = sorted(per_room)
    probes = _duplicate_probes(keys)
    updates = [(_SQL.take_seq, [per_room[r], now, now, r in reopen, r in reopen, r]) for r in rooms]
    if _pipelined():
        rows = _run_pipeline([*probes, *updates])
        duplicate_id = next((row[0] for row in rows[: len(probes)] if row is not None), None)
        granted = rows[len(probes) :]
    else:
        with connection.cursor() as cur:
            duplicate_id = _first_found(cur, probes)
            if duplicate_id is not None:
                return duplicate_id, {}
            granted = []
            for sql, params in updates:
                cur.execute(sql, params)
                granted.append(cur.fetchone())
    return duplicate_id, {r: ((row[0], row[1]) if row is not None else None) for r, row in zip(rooms, granted, strict=True)}


def insert_all(groups: Sequence[Sequence[models.Model]]) -> None:
    """Insert each group of unsaved instances (one model per group), in order, in one round trip."""
    groups = [g for g in groups if g]
    if not _pipelined() or (len(groups) == 1 and len(groups[0]) == 1):
        for group in groups:
            insert_rows(group)
        return
    plans = [insert_plan_per_row(group) for group in groups]
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors:
        returned = []
        with raw.pipeline():
            cursors = []
            for sql, rows, _ in plans:
                # Server-side binding (Django's own cursors bind on the client):
                # the one-row statement is prepared once and each row is sent
                # as parameters, not rendered into SQL text of its own.
                cur = psycopg.Cursor(raw)
                if len(rows) == 1:
                    cur.execute(sql, rows[0])
                else:
                    cur.executemany(sql, rows, returning=True)
                cursors.append(cur)
        for cur in cursors:
            rows = []
            for _ in cur.results():
                if cur.description is not None:
                    rows.extend(cur.fetchall())
            returned.append(rows)
            cur.close()
    for (_, _, assign), rows in zip(plans, returned, strict=True):
        assign(rows)


def _run_pipeline(statements: list[tuple[str, list]], *, fetch_all: bool = False) -> list:
    """Send ``statements`` in one pipeline; return each one's first row (or all rows)."""
    connection.ensure_connection()
    raw = connection.connection
    # Raw cursors bypass Django's wrapper: map driver errors (a unique
    # violation from a racing duplicate) to Django's, as the wrapper would.
    with connection.wrap_database_errors:
        cursors = []
        with raw.pipeline():
            for sql, params in statements:
                cur = raw.cursor()
                cur.execute(sql, params)
                cursors.append(cur)
        results = []
        for cur in cursors:
            if cur.description is None:
                results.append([] if fetch_all else None)
            else:
                results.append(cur.fetchall() if fetch_all else cur.fetchone())
            cur.close()
    return results
