"""Reads for the voice edges: which channel a browser may talk to."""

from __future__ import annotations

from channels_app.webchat.sessions import session_channel
from rooms.enums import ChannelType
from rooms.errors import NotFound, RoomKitError
from rooms.models import Channel


def browser_voice_channel(channel_id: str) -> Channel:
    """The enabled voice channel ``channel_id`` that a browser may open a session on; ``NotFound`` otherwise.

    The same rule as ``POST /api/v1/chat/sessions`` (``session_channel``: a
    ``browser`` provider's channel, not a phone line), narrowed to voice
    channels, so the page never offers a call the session endpoint would
    then refuse. Unknown, disabled and non-voice channels all
    answer the same way: a visitor learns nothing about what else exists.
    """
    try:
        channel = session_channel(channel_id)
    except RoomKitError:
        channel = None
    if channel is None or channel.channel_type != ChannelType.VOICE:
        raise NotFound(f"no voice channel '{channel_id}'", code="unknown_channel")
    return channel
