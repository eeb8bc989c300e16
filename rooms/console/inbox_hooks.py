"""The inbox's own hook: a conversation an agent hands to a human is offered to an online operator (round robin)."""

from __future__ import annotations

from typing import Any

from rooms.console.inbox import offer_round_robin
from rooms.hooks import HookTrigger, hook

# The handoff target that means "a person" (agents.orchestration.HUMAN; rooms does not import agents).
HUMAN = "human"


@hook(HookTrigger.ON_HANDOFF, name="rooms.inbox.offer_round_robin")
def offer_to_an_operator(payload: Any, ctx: Any) -> None:
    """An agent's handoff to a human: assign the unassigned conversation to the next online operator of its team.

    An operator's own takeover assigns them instead (``inbox_action``), so it is left alone.
    """
    if isinstance(payload, dict) and payload.get("to_agent") == HUMAN and not payload.get("operator"):
        room_id = payload.get("room_id")
        if isinstance(room_id, str) and room_id:
            offer_round_robin(room_id)
