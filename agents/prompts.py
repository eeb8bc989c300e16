"""The system prompt an agent gets: its instructions (or the room's override), identity, language, handoffs."""

from __future__ import annotations

from agents.memory import handoff_note
from agents.models import Agent
from agents.orchestration import HUMAN, ConversationState
from agents.selectors import agent_get
from agents.skills import registry as skills


def reply_language(agent: Agent, state: ConversationState, overrides: dict) -> str:
    """The room's language wins over the room override and the agent's default."""
    return state.language or str(overrides.get("language") or "") or agent.language


def build_system_prompt(
    agent: Agent,
    *,
    state: ConversationState,
    overrides: dict,
    handoff_targets: list[str],
    skill_names: list[str],
) -> str:
    parts = [str(overrides.get("system_prompt") or agent.system_prompt or "You are a helpful assistant.").strip()]
    identity = f"You are {agent.display_name}" + (f", {agent.role}" if agent.role else "") + "."
    if agent.description:
        identity += f" {agent.description.strip()}"
    parts.append(identity)
    if agent.scope:
        parts.append(f"Your scope: {agent.scope.strip()} Politely decline requests outside it.")
    language = reply_language(agent, state, overrides)
    if language:
        parts.append(f"Always reply in {language}.")
    if handoff_targets:
        lines = ["You can hand the conversation over with the handoff_conversation tool when another agent fits better:"]
        for target in handoff_targets:
            if target == HUMAN:
                lines.append("- human: a human operator (when the user asks for a person or you cannot help)")
                continue
            other = agent_get(target)
            if other is not None:
                desc = f" — {other.description.strip()}" if other.description else ""
                lines.append(f"- {other.id}: {other.display_name}" + (f" ({other.role})" if other.role else "") + desc)
        lines.append("Give a reason and a short summary of what the next agent needs to know.")
        parts.append("\n".join(lines))
    available = [s for s in (skills.get(n) for n in skill_names) if s is not None]
    if available:
        parts.append(
            "Skills you can activate with the activate_skill tool when relevant:\n"
            + "\n".join(f"- {s.name}: {s.metadata.description}" for s in available)
        )
    note = handoff_note(state, agent)
    if note:
        parts.append(note)
    return "\n\n".join(parts)
