"""What an agent remembers: the room's most recent events as chat turns, and the handoff it inherited.

``SlidingWindowMemory``: the last ``window`` conversational events up to and
including the message being answered (newest first from the index, then put
back in order), so the current message appears exactly once, as the last
turn. This agent's own replies are ``assistant`` turns; other agents' replies
are ``user`` turns labelled with who said them, never passed off as this
agent's words; people are labelled by name when more than one speaks.
``HandoffMemory`` adds the reason and summary of the handoff that gave this
agent the conversation.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage

from agents.models import Agent
from agents.orchestration import ConversationState
from agents.providers.base import ChatMessage
from agents.selectors import agent_get
from agents.statements import memory_page
from rooms.content.kinds import content_text
from rooms.enums import ChannelCategory, ChannelType, EventType
from rooms.inbound.visibility import visible_to
from rooms.models import RoomEvent

# Images larger than this are described, not sent.
MAX_INLINE_IMAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class MemoryEvent:
    """The fields of a stored event that memory needs (read with one plain statement, no model instances)."""

    id: str
    seq: int
    content: dict[str, Any]
    source_channel_id: str | None
    source_channel_type: str | None
    participant_id: str | None
    participant_name: str


def recent_events(room_id: str, *, upto_seq: int, limit: int, agent_id: str) -> list[MemoryEvent]:
    """The ``limit`` most recent messages an agent may see, up to ``upto_seq``, oldest first."""
    picked: list[MemoryEvent] = []
    offset = 0
    while len(picked) < limit:
        # Visibility may name channels: filter here, reading further back only if some were hidden.
        page = memory_page(room_id, upto_seq=upto_seq, limit=limit, offset=offset)
        for ev_id, seq, content, visibility, ch_id, ch_type, p_id, p_name in page:
            if visible_to(visibility, channel_id=agent_id, category=ChannelCategory.INTELLIGENCE):
                picked.append(MemoryEvent(ev_id, seq, content, ch_id, ch_type, p_id, p_name))
                if len(picked) >= limit:
                    break
        if len(page) < limit:
            break
        offset += limit
    picked.reverse()
    return picked


def _local_image(url: str) -> str | None:
    """A file this site stored, as a data: URL (vendors cannot fetch our 127.0.0.1 media)."""
    base = settings.PUBLIC_BASE_URL.rstrip("/") + "/" + settings.MEDIA_URL.strip("/") + "/"
    if not url.startswith(base):
        return None
    name = url[len(base) :]
    if not default_storage.exists(name) or default_storage.size(name) > MAX_INLINE_IMAGE_BYTES:
        return None
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    with default_storage.open(name, "rb") as fh:
        return f"data:{mime};base64,{base64.b64encode(fh.read()).decode()}"


def _images(content: dict[str, Any]) -> list[str]:
    if content.get("type") != "media" or not str(content.get("mime_type", "")).startswith("image/"):
        return []
    url = content.get("url", "")
    return [_local_image(url) or url]


def event_turn(ev: MemoryEvent, *, agent: Agent, label_people: bool, vision: bool) -> ChatMessage:
    """One event as a chat turn from ``agent``'s point of view."""
    content = ev.content
    images = _images(content) if vision else []
    text = content_text(content)
    if images and content.get("type") == "media":
        text = content.get("caption") or ""
    if ev.source_channel_type == ChannelType.AI:
        if ev.source_channel_id == agent.id:
            return ChatMessage("assistant", text)
        other = agent_get(ev.source_channel_id or "")
        if other is None:
            who = ev.source_channel_id
        else:
            who = f"{other.display_name}, {other.role}" if other.role else other.display_name
        return ChatMessage("user", f"[Another agent, {who}, said]: {text}", images)
    if ev.source_channel_type == ChannelType.CONSOLE:
        return ChatMessage("user", f"[Human operator {ev.participant_name or 'operator'} said]: {text}", images)
    if label_people and ev.participant_id:
        return ChatMessage("user", f"[{ev.participant_name}]: {text}", images)
    return ChatMessage("user", text, images)


def _people(events: Iterable[MemoryEvent]) -> set[str]:
    return {
        ev.participant_id
        for ev in events
        if ev.participant_id and ev.source_channel_type not in (ChannelType.AI, ChannelType.CONSOLE)
    }


def heard_only(room_id: str, events: list[MemoryEvent]) -> list[MemoryEvent]:
    """Replies a caller interrupted, cut to what they heard of them (a call's ``voice.heard`` notes).

    An agent whose spoken reply was cut off by the caller must not remember
    having said the rest: the caller never heard it.
    """
    ids = [ev.id for ev in events if ev.source_channel_type == ChannelType.AI]
    if not ids:
        return events
    notes = RoomEvent.objects.filter(room_id=room_id, type=EventType.NOTE, metadata__voice__heard_event_id__in=ids)
    heard = {m["voice"]["heard_event_id"]: m["voice"].get("heard_text", "") for m in notes.values_list("metadata", flat=True)}
    if not heard:
        return events
    return [
        replace(ev, content={"type": "text", "body": f"{heard[ev.id]} — [interrupted by the caller]".strip()})
        if ev.id in heard
        else ev
        for ev in events
    ]


def sliding_window(agent: Agent, room_id: str, *, upto_seq: int, window: int, vision: bool) -> list[ChatMessage]:
    events = heard_only(room_id, recent_events(room_id, upto_seq=upto_seq, limit=window, agent_id=agent.id))
    label = len(_people(events)) > 1
    return [event_turn(ev, agent=agent, label_people=label, vision=vision) for ev in events]


def handoff_note(state: ConversationState, agent: Agent) -> str:
    """What the previous agent handed over, for the agent that took over (empty otherwise)."""
    handoff = state.context.get("handoff") or {}
    if handoff.get("to_agent") != agent.id or state.active_agent_id != agent.id:
        return ""
    previous = agent_get(handoff.get("from_agent") or "")
    who = previous.display_name if previous else handoff.get("from_agent") or "another agent"
    lines = [f"You have taken over this conversation from {who}."]
    if handoff.get("reason"):
        lines.append(f"Reason for the handoff: {handoff['reason']}")
    if handoff.get("summary"):
        lines.append(f"Summary from {who}: {handoff['summary']}")
    return "\n".join(lines)


def event_text(ev: RoomEvent) -> str:
    return content_text(ev.content or {})
