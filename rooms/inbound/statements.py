"""The inbound path's own SQL, in as few round trips as the database allows.

On PostgreSQL a round trip costs ~0.2 ms on this class of machine (more than
the statement itself), so statements that do not depend on each other's
results travel together in psycopg's pipeline mode: the duplicate probe rides
with the UPDATE that locks the room and takes its seq, and the event rides
with its Delivery rows. SQLite runs in-process, where a round trip is a
function call, so there each statement simply runs in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from django.db import connection, models

from rooms.inbound.fast_insert import insert_plan_per_row, insert_rows

_TAKE_SEQ_SQL = (
    "UPDATE rooms_room SET last_seq = last_seq + %s, last_activity_at = %s, updated_at = %s, "
    "paused_at = CASE WHEN status = 'paused' THEN NULL ELSE paused_at END, "
    "status = CASE WHEN status = 'paused' THEN 'active' ELSE status END "
    "WHERE id = %s AND status IN ('active', 'paused') RETURNING last_seq, routing_version"
)
_PROBE_SQL = {
    "idempotency_key": "SELECT id FROM rooms_roomevent WHERE source_channel_id = %s AND idempotency_key = %s",
    "provider_message_id": "SELECT id FROM rooms_roomevent WHERE source_channel_id = %s AND provider_message_id = %s",
}


def _pipelined() -> bool:
    return connection.vendor == "postgresql"


def duplicate_probes(channel_id: str, idempotency_key: str | None, provider_message_id: str | None) -> list:
    probes = []
    if idempotency_key:
        probes.append((_PROBE_SQL["idempotency_key"], [channel_id, idempotency_key]))
    if provider_message_id:
        probes.append((_PROBE_SQL["provider_message_id"], [channel_id, provider_message_id]))
    return probes


def find_duplicate_id(channel_id: str, idempotency_key: str | None, provider_message_id: str | None) -> str | None:
    """The id of the event this channel already stored under either key, if any."""
    with connection.cursor() as cur:
        for sql, params in duplicate_probes(channel_id, idempotency_key, provider_message_id):
            cur.execute(sql, params)
            row = cur.fetchone()
            if row is not None:
                return row[0]
    return None


def take_seq(room_id: str, now: datetime) -> tuple[int, int] | None:
    """Lock the room row and hand out its next seq, in one statement.

    ``UPDATE … RETURNING`` takes the same row lock ``select_for_update`` would,
    held to commit, so seqs are gapless and unique across processes; a paused
    room wakes up on a new message. Returns (seq, routing_version), or None if
    the room is not open.
    """
    with connection.cursor() as cur:
        cur.execute(_TAKE_SEQ_SQL, [1, now, now, room_id])
        row = cur.fetchone()
    return (row[0], row[1]) if row is not None else None


def probe_and_take_seq(
    channel_id: str | None, idempotency_key: str | None, provider_message_id: str | None, room_id: str, now: datetime
) -> tuple[str | None, tuple[int, int] | None]:
    """(duplicate event id, (seq, routing_version)) in one round trip.

    If a duplicate turns up, the seq was taken too: the caller must roll the
    transaction back (duplicates are rare; one round trip for every message is not).
    """
    probes = duplicate_probes(channel_id, idempotency_key, provider_message_id) if channel_id else []
    if not _pipelined():
        dup = find_duplicate_id(channel_id, idempotency_key, provider_message_id) if probes else None
        return dup, (None if dup else take_seq(room_id, now))
    rows = _run_pipeline([*probes, (_TAKE_SEQ_SQL, [1, now, now, room_id])])
    dup = next((row[0] for row in rows[:-1] if row is not None), None)
    taken = rows[-1]
    return dup, ((taken[0], taken[1]) if taken is not None else None)


def _any_duplicate_sql(keys: Sequence[tuple[str, str, str]]) -> tuple[str, list]:
    """One probe for many (channel id, key column, value) triples: does any exist?"""
    by_column: dict[tuple[str, str], list[str]] = {}
    for channel_id, column, value in keys:
        by_column.setdefault((channel_id, column), []).append(value)
    clauses, params = [], []
    for (channel_id, column), values in by_column.items():
        # ``column`` is one of two fixed names (never caller input).
        assert column in _PROBE_SQL
        clauses.append(f"(source_channel_id = %s AND {column} IN ({', '.join(['%s'] * len(values))}))")
        params += [channel_id, *values]
    return f"SELECT id FROM rooms_roomevent WHERE {' OR '.join(clauses)} LIMIT 1", params


def probe_and_take_seq_ranges(
    keys: Sequence[tuple[str, str, str]], per_room: dict[str, int], now: datetime
) -> tuple[bool, dict[str, tuple[int, int] | None]]:
    """For a batch: whether any key is already stored, and for each room (its last seq, routing_version).

    Each room's seq moves up by its count in one UPDATE, rooms locked in id
    order so that two batches never wait on each other in a cycle. As with
    ``probe_and_take_seq``, a duplicate means the seqs were taken anyway and
    the transaction must be rolled back. On PostgreSQL it is all one round trip.
    """
    rooms = sorted(per_room)
    updates = [(_TAKE_SEQ_SQL, [per_room[r], now, now, r]) for r in rooms]
    probe = [_any_duplicate_sql(keys)] if keys else []
    if _pipelined():
        rows = _run_pipeline([*probe, *updates])
    else:
        rows = []
        with connection.cursor() as cur:
            for sql, params in [*probe, *updates]:
                cur.execute(sql, params)
                rows.append(cur.fetchone())
                if probe and len(rows) == 1 and rows[0] is not None:
                    return True, {}
    duplicate = bool(probe) and rows[0] is not None
    granted = rows[len(probe) :]
    return duplicate, {r: ((row[0], row[1]) if row is not None else None) for r, row in zip(rooms, granted, strict=True)}


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
