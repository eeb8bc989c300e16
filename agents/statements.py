"""The agents app's own SQL on the path from a user's message to the first streamed token.

Every routed message and every generation runs these, so each is one plain
statement with its SQL built once, not an ORM query: on this class of machine
compiling a Django query costs 0.3-1.5 ms of CPU (more than a PostgreSQL round
trip, ~0.2 ms), and the ORM would also build full model instances nobody needs.

- ``conversation_state``: the router's read of the room's state (one column).
- ``plan_generation``: the generation row, with its "is this agent's loop still
  running here?" check folded into the INSERT (one round trip instead of two).
- ``claim_generation``: a worker's claim of a pending row together with what
  it needs to start (the room's state, the message, the agent's version), in
  one round trip on PostgreSQL and committed without waiting for the WAL flush
  (see there why that is safe).
- ``memory_page``: the recent messages an agent reads as its context.

Values are adapted as Django would (``adapt_datetimefield_value``; JSON as
text, which both databases accept for their JSON columns), and JSON read back
is decoded here: Django has the PostgreSQL driver return ``jsonb`` as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from agents.models import Agent, Generation, GenerationStatus
from rooms.enums import EventStatus, EventType
from rooms.models import Channel, Participant, Room, RoomEvent


def _run(sql: str, params: list[Any], *, fetch: str = "one") -> Any:
    """Execute one statement and fetch its result (``"one"``, ``"all"`` or ``""`` for nothing)."""
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone() if fetch == "one" else cur.fetchall() if fetch == "all" else None


def _json(value: Any) -> Any:
    """A JSON column's value as read by a raw cursor (text on both databases; a dict if a driver decoded it)."""
    if value is None or isinstance(value, (dict, list)):
        return value
    return json.loads(value)


def _dt(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


# --- the router --------------------------------------------------------------------------


@cache
def _state_sql() -> str:
    return f"SELECT conversation_state FROM {Room._meta.db_table} WHERE id = %s"


def conversation_state(room_id: str) -> dict[str, Any] | None:
    """The room's ``conversation_state`` (None if there is no such room)."""
    row = _run(_state_sql(), [room_id])
    return None if row is None else (_json(row[0]) or {})


@cache
def _plan_sql() -> str:
    g = Generation._meta.db_table
    # The newest running generation of this agent in this room, if any: the new
    # message steers that loop. Both databases evaluate the two copies of the
    # subquery in the statement's one snapshot, so they agree.
    running = (
        f"(SELECT r.id FROM {g} r WHERE r.room_id = %s AND r.agent_id = %s AND r.status = "
        f"'{GenerationStatus.RUNNING}' ORDER BY r.created_at DESC LIMIT 1)"
    )
    status = f"CASE WHEN {running} IS NULL THEN '{GenerationStatus.PENDING}' ELSE '{GenerationStatus.STEERING}' END"
    return (
        f"INSERT INTO {g} (id, room_id, agent_id, trigger_event_id, kind, status, steer_target_id, attempts, "
        "reply_event_id, provider_used, rounds, usage, tool_calls, error, created_at, started_at, finished_at) "
        f"VALUES (%s, %s, %s, %s, %s, {status}, {running}, 0, NULL, '', 0, %s, %s, '', %s, NULL, NULL) "
        "RETURNING steer_target_id"
    )


@cache
def _plan_plain_sql() -> str:
    g = Generation._meta.db_table
    return (
        f"INSERT INTO {g} (id, room_id, agent_id, trigger_event_id, kind, status, steer_target_id, attempts, "
        "reply_event_id, provider_used, rounds, usage, tool_calls, error, created_at, started_at, finished_at) "
        f"VALUES (%s, %s, %s, %s, %s, '{GenerationStatus.PENDING}', NULL, 0, NULL, '', 0, %s, %s, '', %s, NULL, NULL)"
    )


def plan_generation(
    *, generation_id: str, room_id: str, agent_id: str, event_id: str | None, kind: str, now: datetime, may_steer: bool
) -> str | None:
    """Insert a generation row: ``steering`` (returns the loop it steers) while one of this agent's loops runs
    in the room and ``may_steer``, else ``pending`` (returns None). Raises IntegrityError on a repeat."""
    if not may_steer:
        _run(_plan_plain_sql(), [generation_id, room_id, agent_id, event_id, kind, "{}", "[]", _dt(now)], fetch="")
        return None
    row = _run(
        _plan_sql(),
        [generation_id, room_id, agent_id, event_id, kind, room_id, agent_id, room_id, agent_id, "{}", "[]", _dt(now)],
    )
    return row[0] if row else None


# --- the worker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedGeneration:
    """A generation this worker now runs, with what it needs before the first token."""

    id: str
    room_id: str
    agent_id: str
    trigger_event_id: str | None
    kind: str
    room_status: str
    conversation_state: dict[str, Any]
    ai_config: dict[str, Any]
    routing_version: int
    trigger_seq: int | None
    trigger_status: str | None
    trigger_chain_depth: int
    agent_updated_at: Any


@cache
def _claim_sql(vendor: str) -> tuple[str, str]:
    g, r, e, a = Generation._meta.db_table, Room._meta.db_table, RoomEvent._meta.db_table, Agent._meta.db_table
    update = (
        f"UPDATE {g} SET status = '{GenerationStatus.RUNNING}', attempts = attempts + 1, started_at = %s "
        f"WHERE id = %s AND status = '{GenerationStatus.PENDING}' RETURNING id, room_id, agent_id, trigger_event_id, kind"
    )
    context = (
        f"SELECT r.status, r.conversation_state, r.ai_config, r.routing_version, e.seq, e.status, e.chain_depth, "
        f"a.updated_at FROM {r} r LEFT JOIN {e} e ON e.id = %s LEFT JOIN {a} a ON a.id = %s WHERE r.id = %s"
    )
    if vendor != "postgresql":
        return update, context
    # One round trip: the claim, then what the run needs, read in the same
    # statement. ``set_config(..., true)`` is SET LOCAL for this statement's
    # own transaction: its commit does not wait for the WAL flush (the
    # durable commit costs ~0.5-3 ms on this machine, on every generation,
    # before the first token). Safe because nothing relies on the claim being
    # durable: it is still atomic and immediately visible to other workers
    # (so a generation is never run twice concurrently); only an OS crash in
    # the next few ms can forget it, and then the row is back to ``pending``
    # with its worker gone, which is exactly what the sweeper re-runs.
    # The WAL is sequential, so the reply's own durable commit later also
    # makes this claim durable.
    claim = (
        "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)), "
        f"c AS ({update}) "
        "SELECT c.id, c.room_id, c.agent_id, c.trigger_event_id, c.kind, "
        "r.status, r.conversation_state, r.ai_config, r.routing_version, e.seq, e.status, e.chain_depth, a.updated_at "
        f"FROM c CROSS JOIN cfg JOIN {r} r ON r.id = c.room_id LEFT JOIN {e} e ON e.id = c.trigger_event_id "
        f"LEFT JOIN {a} a ON a.id = c.agent_id"
    )
    return claim, ""


def claim_generation(generation_id: str, now: datetime) -> ClaimedGeneration | None:
    """Move a pending generation to running (attempts + 1) and return it; None if it was not pending."""
    claim, context = _claim_sql(connection.vendor)
    if not context and not connection.in_atomic_block:
        row = _run(claim, [_dt(now), generation_id])
        if row is None:
            return None
    else:
        # SQLite (a round trip is a function call there), or a caller's own
        # transaction, whose durability is not ours to change.
        update, context = _claim_sql("")
        head = _run(update, [_dt(now), generation_id])
        if head is None:
            return None
        rest = _run(context, [head[3], head[2], head[1]])
        if rest is None:
            return None  # the room is gone (the row went with it)
        row = (*head, *rest)
    return ClaimedGeneration(
        id=row[0],
        room_id=row[1],
        agent_id=row[2],
        trigger_event_id=row[3],
        kind=row[4],
        room_status=row[5],
        conversation_state=_json(row[6]) or {},
        ai_config=_json(row[7]) or {},
        routing_version=int(row[8]),
        trigger_seq=row[9],
        trigger_status=row[10],
        trigger_chain_depth=int(row[11] or 0),
        agent_updated_at=row[12],
    )


# --- memory ---------------------------------------------------------------------------------


@cache
def _memory_sql() -> str:
    e, c, p = RoomEvent._meta.db_table, Channel._meta.db_table, Participant._meta.db_table
    return (
        "SELECT e.id, e.seq, e.content, e.visibility, e.source_channel_id, c.channel_type, "
        f"e.source_participant_id, p.display_name FROM {e} e "
        f"LEFT JOIN {c} c ON c.id = e.source_channel_id LEFT JOIN {p} p ON p.id = e.source_participant_id "
        f"WHERE e.room_id = %s AND e.seq <= %s AND e.type = '{EventType.MESSAGE}' "
        f"AND e.status = '{EventStatus.DELIVERED}' AND e.deleted_at IS NULL "
        "ORDER BY e.seq DESC LIMIT %s OFFSET %s"
    )


def memory_page(room_id: str, *, upto_seq: int, limit: int, offset: int) -> list[tuple]:
    """Delivered, undeleted messages of the room up to ``upto_seq``, newest first:
    (id, seq, content, visibility, source channel id, its type, participant id, participant name)."""
    rows = _run(_memory_sql(), [room_id, upto_seq, limit, offset], fetch="all")
    return [(r[0], r[1], _json(r[2]) or {}, r[3], r[4], r[5], r[6], r[7] or "") for r in rows]
