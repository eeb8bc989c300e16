"""Twilio Media Streams for one call: the audio both ways, and what the caller has heard.

In: Twilio's ``media`` messages carry the caller's audio as base64 μ-law at
8 kHz, 20 ms each; ``caller_audio`` decodes them (G.711, ``voice.audio``) and
resamples them to the session's 16 kHz with the call's own resampler.

Out: the session plays 16-bit PCM at ``output_rate`` (8 kHz); it is encoded
to μ-law and sent as 20 ms ``media`` messages (a remainder shorter than a
frame waits for the next chunk, so sentences join without gaps, and goes out
padded with silence when the playback ends), each chunk of speech followed
by a ``mark``. Twilio plays what it receives from its own buffer (we send
faster than real time) and echoes a mark once the audio before it has been
played to the caller: the last echoed mark is what the caller has heard
(``heard_ms``, from the start of the current playback), and the echo of the
last one says everything sent has been heard (``mark_played`` answers True:
the session's playback is over, ``VoiceSession.playback_drained``).

``stop_playback`` (a barge-in) sends ``clear``: Twilio drops its buffer and
then echoes every mark still pending. Those echoes say nothing was heard, so
the marks are forgotten at the clear and their echoes ignored. A mark that
was really played but whose echo crosses our ``clear`` is lost with them:
``heard_ms`` errs low, never high.

Everything here belongs to one call: a transport per stream.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voice.audio import AudioFrame, Resampler, ulaw_decode, ulaw_encode

logger = logging.getLogger(__name__)

WIRE_RATE = 8000
SESSION_RATE = 16000
FRAME_MS = 20
FRAME_BYTES = WIRE_RATE * FRAME_MS // 1000  # μ-law: one byte a sample
ULAW_SILENCE = b"\xff"  # the μ-law code of 0

SendMessage = Callable[[dict[str, Any]], Awaitable[None]]


class TwilioMediaTransport:
    """The ``VoiceTransport`` of one Twilio Media Stream; ``send`` writes one JSON message to Twilio."""

    output_rate = WIRE_RATE

    def __init__(self, send: SendMessage, stream_sid: str) -> None:
        self.stream_sid = stream_sid
        self._send = send
        self._inbound = Resampler(WIRE_RATE, SESSION_RATE)
        self._partial = bytearray()  # μ-law waiting for a whole frame
        self._marks: dict[str, float] = {}  # marks sent, not yet echoed -> playback position (ms) they follow
        self._mark_serial = 0
        self._playing = False
        self.sent_ms = 0.0  # audio of the current playback sent to Twilio
        self.heard_ms = 0.0  # audio of the current playback the caller has heard (the last echoed mark)

    # --- the caller's audio ------------------------------------------------------------------

    def caller_audio(self, payload: str) -> bytes:
        """A ``media`` payload (base64 μ-law, 8 kHz) as 16 kHz PCM for the session; empty when it is not base64."""
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            logger.warning("twilio stream %s: a media payload that is not base64", self.stream_sid)
            return b""
        return self._inbound.process(AudioFrame(ulaw_decode(ulaw), WIRE_RATE)).pcm

    # --- the session's speech ----------------------------------------------------------------

    async def play(self, pcm: bytes) -> None:
        """Speech for the caller (PCM at 8 kHz): whole 20 ms ``media`` messages now, then a ``mark``."""
        if not self._playing:
            self._start_playback()
        self._partial += ulaw_encode(pcm)
        whole = len(self._partial) - len(self._partial) % FRAME_BYTES
        if whole:
            await self._send_frames(bytes(self._partial[:whole]))
            del self._partial[:whole]
            await self._mark()

    async def stop_playback(self) -> None:
        """Barge-in: ``clear`` Twilio's buffer; the marks it will echo for it are forgotten now."""
        self._partial.clear()
        self._marks.clear()
        self._playing = False
        await self._send({"event": "clear", "streamSid": self.stream_sid})

    async def control(self, frame: dict[str, Any]) -> None:
        # A phone has no screen: states, transcripts and text are the browser's. The end of a playback is ours.
        if frame.get("type") == "playback_stop" and self._playing:
            self._playing = False
            if self._partial:  # the reply's last few ms, as a whole frame
                frame_bytes = bytes(self._partial) + ULAW_SILENCE * (FRAME_BYTES - len(self._partial))
                self._partial.clear()
                await self._send_frames(frame_bytes)

    def mark_played(self, name: str) -> bool:
        """Twilio's echo of a mark: the caller has heard the audio before it. True when that is all that was sent."""
        position = self._marks.pop(name, None)
        if position is None:
            return False  # cleared, or of an earlier playback
        self.heard_ms = max(self.heard_ms, position)
        # Twilio plays in order: what came before this mark has been heard too.
        for earlier in [n for n, p in self._marks.items() if p <= position]:
            del self._marks[earlier]
        return not self._marks

    def close(self) -> None:
        """The call is over: no echo is awaited any more."""
        self._marks.clear()
        self._playing = False

    # --- internals -----------------------------------------------------------------------------

    def _start_playback(self) -> None:
        self._marks.clear()  # a previous playback's echoes that never came
        self._partial.clear()
        self._playing = True
        self.sent_ms = 0.0
        self.heard_ms = 0.0

    async def _send_frames(self, ulaw: bytes) -> None:
        for i in range(0, len(ulaw), FRAME_BYTES):
            payload = base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode("ascii")
            await self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
            self.sent_ms += FRAME_MS

    async def _mark(self) -> None:
        self._mark_serial += 1
        name = f"rk{self._mark_serial}"
        self._marks[name] = self.sent_ms
        await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
