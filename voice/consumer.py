"""The browser's voice socket ``/ws/voice/?token=…`` (the ``/voice/`` page), as the contract fixes it.

In: binary frames of 16-bit little-endian mono PCM at 16 kHz (the page's
AudioWorklet), and JSON ``{"type": "hangup"}``. Out: first
``{"type": "audio_format", …}``, then binary PCM of the agent's speech at that
rate, and JSON frames (state, transcripts, the agent's text, playback and
barge-in, DTMF). The token is a chat session's for a voice channel
(``POST /api/v1/chat/sessions`` with its ``channel_id``). The call itself is a
``voice.session.VoiceSession``; this edge only authenticates, relays and
closes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from channels_app.webchat.services import webchat_participant
from channels_app.webchat.tokens import chat_token_verify
from rooms.enums import ChannelType
from rooms.realtime import broadcast as realtime
from rooms.selectors import get_channel
from voice.config import voice_settings
from voice.session import CallParty, VoiceSession, json_frame, run_blocking, speech_engines

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_UNAVAILABLE = 1011
# Frames of audio larger than this (bytes) are refused: the page sends 20 ms (640 bytes).
MAX_AUDIO_FRAME = 64_000


def _voice_call(token: str) -> tuple[CallParty, dict[str, Any]] | None:
    """The caller a token speaks for on a browser voice channel, and that channel's config; None if it is not one."""
    claims = chat_token_verify(token)
    if claims is None:
        return None
    try:
        channel = get_channel(claims.channel_id)
    except Exception:
        return None
    if channel.channel_type != ChannelType.VOICE or not channel.enabled:
        return None
    participant = webchat_participant(claims)
    if participant is None:
        return None
    party = CallParty(
        channel_id=channel.id,
        room_id=claims.room_id,
        participant_id=claims.participant_id,
        sender=claims.participant_id,
        display_name=claims.display_name,
        reserved_room=True,
    )
    return party, channel.config or {}


class _BrowserTransport:
    def __init__(self, consumer: BrowserVoiceConsumer, output_rate: int) -> None:
        self.consumer = consumer
        self.output_rate = output_rate

    async def play(self, pcm: bytes) -> None:
        await self.consumer.send(bytes_data=pcm)

    async def stop_playback(self) -> None:
        # The page flushes its jitter buffer on ``playback_stop`` / ``barge_in``, which the session sends next.
        return None

    async def control(self, frame: dict[str, Any]) -> None:
        await self.consumer.send(text_data=json_frame(frame))


class BrowserVoiceConsumer(AsyncWebsocketConsumer):
    session: VoiceSession | None = None
    _hub: Any = None

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        call = await database_sync_to_async(_voice_call)((query.get("token") or [""])[0])
        await self.accept()
        if call is None:
            # Accepted first, so the page gets the close code it acts on (not a failed handshake).
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        party, config = call
        settings = voice_settings(config)
        try:
            # Loading an engine the first time reads its model: off the event loop.
            session = await run_blocking(speech_engines, settings)
        except Exception:
            logger.exception("voice channel %s: the speech engines could not start", party.channel_id)
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        stt, tts = session
        # Browsers capture with their own echo cancellation, noise suppression and gain (the page asks for them).
        settings = replace(settings, native=settings.native | {"aec", "denoise", "agc"})
        self.session = VoiceSession(_BrowserTransport(self, tts.sample_rate), party, settings, stt=stt, tts=tts)
        await self.send(
            text_data=json_frame({"type": "audio_format", "encoding": "pcm_s16le", "sample_rate": tts.sample_rate, "channels": 1})
        )
        self._hub = await realtime.room_hub_join(party.room_id, self)
        await self.session.start()

    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        """A room frame (this socket is a room-hub sink): replies for the session to speak."""
        if self.session is not None:
            await self.session.room_message(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if bytes_data is not None:
            if len(bytes_data) > MAX_AUDIO_FRAME or len(bytes_data) % 2:
                await self.send(text_data=json_frame({"type": "error", "code": "bad_audio", "message": "PCM s16le frames only"}))
                return
            await self.session.feed(bytes_data)
            return
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "hangup":
            await self.close(code=1000)
        elif kind == "playback_done":
            samples = frame.get("samples")
            self.session.playback_drained(samples if isinstance(samples, int) and samples >= 0 else None)
        else:
            await self.send(text_data=json_frame({"type": "error", "code": "bad_frame", "message": "unknown frame"}))

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await realtime.room_hub_leave(hub, self)
