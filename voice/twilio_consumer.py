"""The phone's socket ``/ws/twilio/<channel_id>/``: a Twilio Media Stream, as Twilio documents it.

Twilio opens it when a call to a ``twilio`` voice channel reads the TwiML of
its webhook (``channels_app.providers.twilio.calls``). In: ``connected``,
``start`` (the stream's and call's ids, and our parameters), ``media`` (the
caller's audio), ``mark`` (echoes of ours), ``dtmf`` (a key pressed),
``stop``. Out: ``media``, ``mark`` and ``clear``, each with the ``streamSid``
(``voice.twilio_media``).

Trust: the handshake's ``X-Twilio-Signature`` (Twilio signs the upgrade
request, over the stream's ``wss://`` URL) is checked when it is there, and a
bad one refuses the socket; the caller's number is taken only from the
token our TwiML put on the stream, checked at ``start`` against this channel
and the stream's CallSid (the stream's parameters themselves are not signed).

The call is a ``voice.session.VoiceSession`` on the caller's room
(``voice.services.voice_call_start``: the room bound to their number, or a
new one, and "call started" recorded); ``stop`` or a dropped socket ends it
and records "call ended". This edge only verifies, relays and ends.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from channels_app.providers.twilio.calls import (
    PARAM_TOKEN,
    stream_token_verify,
    stream_url,
    verify_stream_handshake,
)
from channels_app.providers.twilio.config import TwilioConfigError, twilio_config
from rooms.enums import ChannelType
from rooms.realtime import broadcast as realtime
from rooms.selectors import get_channel
from voice.config import voice_settings
from voice.services import voice_call_end, voice_call_start
from voice.session import CallParty, VoiceSession, run_blocking, speech_engines
from voice.twilio_media import TwilioMediaTransport

logger = logging.getLogger(__name__)

# Twilio reads no close codes; these say why in our logs and tests.
CLOSE_REFUSED = 4403
CLOSE_UNAVAILABLE = 1011
SIGNATURE_HEADER = b"x-twilio-signature"


@dataclass(frozen=True)
class _StreamChannel:
    channel_id: str
    account_sid: str
    config: dict[str, Any]


def _stream_channel(channel_id: str, url: str, signature: str | None) -> _StreamChannel | None:
    """The Twilio voice channel this socket is for, if the handshake may open it; None refuses it."""
    try:
        channel = get_channel(channel_id)
    except Exception:
        return None
    if channel.channel_type != ChannelType.VOICE or channel.provider != "twilio" or not channel.enabled:
        return None
    try:
        cfg = twilio_config(channel)
    except TwilioConfigError:
        return None
    if signature is None:
        # Twilio documents a signed handshake; without one, only our token can open the call (checked at start).
        logger.info("twilio stream on %s: handshake without X-Twilio-Signature; the call's token decides", channel_id)
    elif not verify_stream_handshake(url, signature, cfg.auth_token):
        logger.info("twilio stream on %s: handshake signature check failed", channel_id)
        return None
    return _StreamChannel(channel.id, cfg.account_sid, channel.config or {})


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1")
    return None


class TwilioMediaStreamConsumer(AsyncWebsocketConsumer):
    channel: _StreamChannel | None = None
    session: VoiceSession | None = None
    transport: TwilioMediaTransport | None = None
    party: CallParty | None = None
    call_sid: str = ""
    _hub: Any = None
    _started_at: float = 0.0
    _ended: bool = False

    async def connect(self) -> None:
        channel_id = self.scope["url_route"]["kwargs"]["channel_id"]
        url = stream_url(channel_id)
        query = self.scope.get("query_string", b"").decode("latin1")
        if query:
            url += "?" + query
        self.channel = await database_sync_to_async(_stream_channel)(channel_id, url, _header(self.scope, SIGNATURE_HEADER))
        if self.channel is None:
            await self.close()  # before accept: the handshake is refused (403)
            return
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        event = message.get("event")
        if event == "media":
            media = message.get("media") or {}
            if self.session is not None and self.transport is not None and media.get("track", "inbound") == "inbound":
                await self.session.feed(self.transport.caller_audio(str(media.get("payload") or "")))
        elif event == "mark":
            name = str((message.get("mark") or {}).get("name") or "")
            if self.transport is not None and self.transport.mark_played(name) and self.session is not None:
                # The caller has heard all that was sent: the playback may be over before its real-time estimate.
                self.session.playback_drained()
        elif event == "dtmf":
            digit = str((message.get("dtmf") or {}).get("digit") or "")
            if self.session is not None and digit:
                await self.session.dtmf(digit)
        elif event == "start":
            await self._start(message)
        elif event == "stop":
            await self._end("stop")
            await self.close()
        # "connected" (the protocol's greeting) and anything Twilio adds later need nothing.

    async def _start(self, message: dict[str, Any]) -> None:
        if self.session is not None or self.channel is None:
            return
        start = message.get("start") or {}
        stream_sid = str(start.get("streamSid") or message.get("streamSid") or "")
        call_sid = str(start.get("callSid") or "")
        parameters = start.get("customParameters") or {}
        token = str(parameters.get(PARAM_TOKEN) or "")
        claims = stream_token_verify(token, channel_id=self.channel.channel_id, call_sid=call_sid)
        if claims is None or not stream_sid or start.get("accountSid") != self.channel.account_sid:
            logger.info("twilio stream on %s: start refused (no valid token for call %r)", self.channel.channel_id, call_sid)
            await self.close(code=CLOSE_REFUSED)
            return
        party = await database_sync_to_async(voice_call_start)(
            channel_id=self.channel.channel_id,
            caller=claims.caller,
            call_id=call_sid,
            data={"carrier": "twilio", "to": claims.called, "stream_sid": stream_sid},
        )
        if party is None:
            await self.close(code=CLOSE_REFUSED)
            return
        self.party, self.call_sid, self._started_at = party, call_sid, time.monotonic()
        settings = voice_settings(self.channel.config)
        try:
            stt, tts = await run_blocking(speech_engines, settings)
        except Exception:
            logger.exception("voice channel %s: the speech engines could not start", party.channel_id)
            await self._end("unavailable")
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        # Twilio reports keys as ``dtmf`` messages, and the tones stay in its audio: one detector is enough.
        settings = replace(settings, native=settings.native | {"dtmf"})
        self.transport = TwilioMediaTransport(self._send_message, stream_sid)
        self.session = VoiceSession(self.transport, party, settings, stt=stt, tts=tts)
        self._hub = await realtime.room_hub_join(party.room_id, self)
        await self.session.start()

    async def _send_message(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        """A room frame (this socket is a room-hub sink): replies for the session to speak."""
        if self.session is not None:
            await self.session.room_message(message)

    async def _end(self, reason: str) -> None:
        """End the call once: stop the session, leave the room, record "call ended"."""
        if self._ended or self.party is None:
            return
        self._ended = True
        if self.session is not None:
            await self.session.close()
        if self.transport is not None:
            self.transport.close()
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await realtime.room_hub_leave(hub, self)
        duration_ms = (time.monotonic() - self._started_at) * 1000
        await database_sync_to_async(voice_call_end)(self.party, call_id=self.call_sid, reason=reason, duration_ms=duration_ms)

    async def disconnect(self, code: int) -> None:
        await self._end("hangup")
