"""The operator console's actions on a room's AI conversation: take over, hand back, hand off.

Registered with the console by ``AgentsConfig.ready()`` (``rooms.registries``):
the rules are the agents' orchestration, the console only offers and audits them.
"""

from __future__ import annotations

from typing import Any

from agents import services
from rooms import registries
from rooms.console.inbox import operator_public_name
from rooms.errors import InvalidInput


def takeover(user: Any, room_id: str, params: dict[str, str]) -> str:
    services.conversation_takeover(room_id, user.get_username(), operator_name=operator_public_name(user))
    return "You have the conversation: the AI stays quiet until you hand it back."


def handback(user: Any, room_id: str, params: dict[str, str]) -> str:
    agent_id = _agent(params, "choose the agent to hand back to")
    services.conversation_handback(room_id, agent_id)
    return f"Handed back to {agent_id}."


def handoff(user: Any, room_id: str, params: dict[str, str]) -> str:
    target = _agent(params, "choose the agent to hand off to")
    handed_by = services.conversation_operator_handoff(room_id=room_id, target=target, operator=user.get_username())
    return f"Handed off from {handed_by} to {target}." if handed_by else f"Handed off to {target}."


def _agent(params: dict[str, str], missing: str) -> str:
    agent_id = params.get("agent", "")
    if not agent_id:
        raise InvalidInput(missing, code="invalid_agent")
    return agent_id


def register() -> None:
    registries.register_console_action("takeover", takeover)
    registries.register_console_action("handback", handback)
    registries.register_console_action("handoff", handoff)
