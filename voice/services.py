"""What a call does to the rest of the system: the call opened and ended, the caller's turns stored, the voice hooks fired.

Called from the voice worker threads (``voice.session.run_blocking``), never
from the event loop: they reach the database.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from rooms.content.storable import scrub_text
from rooms.enums import EventType, Visibility
from rooms.errors import RoomKitError
from rooms.hooks import HookAction, HookContext, HookTrigger, fire, registry, run_sync_hooks
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import Participant
from rooms.selectors import get_channel
from voice.session import CallParty

logger = logging.getLogger(__name__)


def caller_message(party: CallParty, **fields: Any) -> InboundResult:
    """Store something as coming from the call's caller (their turn, a note of the call) through the inbound path."""
    return process_inbound(
        InboundMessage(
            channel_id=party.channel_id,
            room_id=party.room_id,
            participant_id=party.participant_id,
            sender=party.sender,
            reserved_room=party.reserved_room,
            **fields,
        )
    )


def hooks_listen(trigger: str, channel_id: str) -> bool:
    """Whether any hook is registered for ``trigger`` (a voice event need not leave the loop otherwise)."""
    try:
        return registry.has(HookTrigger(trigger))
    except ValueError:
        return False


def _context(party: CallParty) -> HookContext:
    channel = get_channel(party.channel_id)
    return HookContext(party.room_id, channel_id=party.channel_id, channel_type=channel.channel_type, direction="inbound")


def voice_hook_fire(party: CallParty, trigger: str, payload: dict[str, Any]) -> None:
    """Run the hooks of a voice notification (``on_speech_start``, ``on_barge_in``, …); failures are logged."""
    try:
        fire(HookTrigger(trigger), {"room_id": party.room_id, "participant_id": party.participant_id, **payload}, _context(party))
    except Exception:
        logger.exception("voice hook %s failed", trigger)


def agent_voice(agent_id: str) -> str:
    """The voice setting of the agent whose channel is ``agent_id`` ("" when it has none, or is not an enabled agent).

    Through the agents' process cache: the agent that just generated the reply is in it.
    """
    from agents.selectors import agent_get

    agent = agent_get(agent_id)
    return agent.voice if agent is not None else ""


def voice_turn_store(party: CallParty, text: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """Store the caller's turn as their message, after ``ON_TRANSCRIPTION`` (which may change or block it).

    Returns ``{"id", "seq", "text"}`` of the stored event, or None when a hook
    blocked the turn or the inbound path did not store it.
    """
    ctx = _context(party)
    payload = {"text": text, "room_id": party.room_id, "participant_id": party.participant_id}
    for _, result in run_sync_hooks(HookTrigger.ON_TRANSCRIPTION, payload, ctx):
        if result.action == HookAction.BLOCK:
            logger.info("voice turn in room %s blocked by a hook: %s", party.room_id, result.reason)
            return None
        if result.content and isinstance(result.content.get("body"), str):
            payload["text"] = result.content["body"]
    text = scrub_text(payload["text"]).strip()
    if not text:
        return None
    result = caller_message(
        party,
        display_name=party.display_name or None,
        content={"type": "text", "body": text},
        metadata=metadata,
    )
    if result.event is None or result.blocked:
        return None
    return {"id": result.event.id, "seq": result.event.seq, "text": text}


def voice_recording_store(party: CallParty, files: list[tuple[str, bytes, float]]) -> str | None:
    """Store a call's recordings as media and link them from the room's timeline (an internal note); its event id."""
    from channels_app.inbound_media import store_inbound_media

    parts: list[dict[str, Any]] = []
    for label, wav, duration_ms in files:
        media = store_inbound_media(wav, vendor="recording", declared_type="audio/wav")
        parts.append(
            {"type": "media", "url": media.url, "mime_type": media.mime_type, "caption": f"{label} ({duration_ms / 1000:.1f} s)"}
        )
    if not parts:
        return None
    result = caller_message(
        party,
        content={"type": "composite", "parts": [{"type": "text", "body": "Call recording"}, *parts]},
        event_type=EventType.NOTE,
        visibility=Visibility.INTERNAL,
        metadata={"voice": {"recording": [p["url"] for p in parts]}},
    )
    return result.event.id if result.event is not None else None


def voice_reply_heard(party: CallParty, event_id: str, heard_text: str) -> None:
    """Note what the caller heard of a reply they interrupted; the agents' memory keeps only that (``agents.memory``)."""
    caller_message(
        party,
        content={"type": "text", "body": f"The caller interrupted the reply; they heard: “{heard_text}”"},
        event_type=EventType.NOTE,
        visibility=Visibility.INTERNAL,
        metadata={"voice": {"heard_event_id": event_id, "heard_text": heard_text}},
    )


def voice_recordings_expire(now: datetime | None = None) -> int:
    """Delete recordings older than ``ROOMKIT_RECORDING_RETENTION_DAYS`` (0 keeps them); how many were deleted."""
    days = settings.ROOMKIT_RECORDING_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    root = "inbound/recording"
    try:
        years, _ = default_storage.listdir(root)
    except FileNotFoundError:
        return 0
    for year in years:
        months, _ = default_storage.listdir(f"{root}/{year}")
        for month in months:
            folder = f"{root}/{year}/{month}"
            for name in default_storage.listdir(folder)[1]:
                path = f"{folder}/{name}"
                if default_storage.get_modified_time(path) < cutoff:
                    default_storage.delete(path)
                    deleted += 1
    return deleted


def voice_before_tts(party: CallParty, text: str) -> str | None:
    """``BEFORE_TTS`` hooks on what is about to be spoken: the text to say, or None when a hook blocks it."""
    if not hooks_listen(HookTrigger.BEFORE_TTS.value, party.channel_id):
        return text
    payload = {"text": text, "room_id": party.room_id}
    for _, result in run_sync_hooks(HookTrigger.BEFORE_TTS, payload, _context(party)):
        if result.action == HookAction.BLOCK:
            return None
        if result.content and isinstance(result.content.get("body"), str):
            payload["text"] = result.content["body"]
    return payload["text"]


def _call_event(body: str, code: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "system", "body": body, "code": code, "data": data}


def voice_call_start(*, channel_id: str, caller: str, call_id: str, data: dict[str, Any] | None = None) -> CallParty | None:
    """A phone call from ``caller`` on ``channel_id``: the caller's room, and "call started" recorded in it.

    The call is the caller's message on the channel like any other: the
    inbound path finds the room bound to this number on this channel, or
    opens one (``open_room_for_channel``) when the channel admits new callers,
    and makes the caller its participant. The event is an internal system
    event (operators see it; no agent answers it, no channel is sent it),
    keyed by ``call_id``: a second ``start`` of one call records nothing new
    and gets the same room. None when the caller is refused (an identity hook
    rejected them, or the channel opens no room for a new caller).
    """
    try:
        result = process_inbound(
            InboundMessage(
                channel_id=channel_id,
                sender=caller,
                event_type=EventType.SYSTEM,
                visibility=Visibility.INTERNAL,
                content=_call_event("Call started", "call_started", {"call_id": call_id, **(data or {})}),
                idempotency_key=f"call:{call_id}:started",
            )
        )
    except RoomKitError as exc:
        logger.info("call %s from %s on %s refused: %s", call_id, caller, channel_id, exc)
        return None
    event = result.event
    if event is None or event.source_participant_id is None:
        logger.info("call %s from %s on %s refused: %s %s", call_id, caller, channel_id, result.status, result.reason)
        return None
    participant = Participant.objects.only("address", "display_name").get(pk=event.source_participant_id)
    return CallParty(
        channel_id=channel_id,
        room_id=event.room_id,
        participant_id=participant.id,
        sender=participant.address or caller,
        display_name=participant.display_name,
    )


def voice_call_end(party: CallParty, *, call_id: str, reason: str, duration_ms: float) -> None:
    """Record that the call ended (once per call); a room closed meanwhile is logged, not raised."""
    try:
        caller_message(
            party,
            event_type=EventType.SYSTEM,
            visibility=Visibility.INTERNAL,
            content=_call_event(
                "Call ended", "call_ended", {"call_id": call_id, "reason": reason, "duration_ms": round(duration_ms)}
            ),
            idempotency_key=f"call:{call_id}:ended",
        )
    except RoomKitError as exc:
        logger.warning("call %s in room %s: its end was not recorded: %s", call_id, party.room_id, exc)
