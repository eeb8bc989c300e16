"""A call on ``/ws/voice/`` through the project's ASGI app: real speech in, a stored turn, a reply spoken back.

The socket is driven as a server drives it (the app's own receive/send), the
audio is espeak-ng speech sent in the page's 20 ms frames, transcription is
Whisper and speech synthesis espeak-ng — the whole offline stack, no fakes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import tempfile
import time
import wave
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import numpy as np
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings
from django.utils import timezone

from channels_app.webchat.sessions import chat_session_start
from rooms.enums import ChannelType
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Delivery, RoomEvent
from tests.support import make_channel
from tests.voice.audio_samples import speech
from tests.voice.sockets import SocketWatch

RATE = 16000
VOICE_CONFIG = {"voice": {"stt": {"provider": "whisper"}, "tts": {"provider": "espeak"}, "interruption": "confirmed"}}


class _Call(SocketWatch):
    """One ``/ws/voice/`` socket on the project's ASGI application."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.frames: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.closed: int | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    async def open(self) -> None:
        from roomkit_project.asgi import application

        scope = {
            "type": "websocket",
            "path": "/ws/voice/",
            "raw_path": b"/ws/voice/",
            "query_string": f"token={self.token}".encode(),
            "headers": [(b"origin", b"http://127.0.0.1:8000")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }
        self.app = asyncio.ensure_future(application(scope, self._inbox.get, self._send))
        await self._inbox.put({"type": "websocket.connect"})

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            if message.get("bytes") is not None:
                self.audio += message["bytes"]
            else:
                self.frames.append(json.loads(message["text"]))
        elif message["type"] == "websocket.close":
            self.closed = message.get("code", 1000)
        self.changed()

    def describe(self) -> str:
        return f"frames: {self.frames[-10:]}"

    def frame(self, kind: str) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == kind), None)

    async def speak(self, pcm: np.ndarray, *, trailing_silence_ms: int = 1200) -> None:
        """The page's 20 ms frames of ``pcm``, then silence (the caller stops talking)."""
        audio = np.concatenate([pcm, np.zeros(RATE * trailing_silence_ms // 1000)]).astype("<i2").tobytes()
        for i in range(0, len(audio), 640):
            await self._inbox.put({"type": "websocket.receive", "bytes": audio[i : i + 640]})
            await asyncio.sleep(0)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self._inbox.put({"type": "websocket.receive", "text": json.dumps(frame)})

    async def close(self) -> None:
        await self._inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.app, 15)


class BrowserCallTest(TransactionTestCase):
    def test_a_spoken_turn_is_stored_and_a_reply_is_spoken_back(self):
        make_channel("voice-test", channel_type=ChannelType.VOICE, provider="browser", config=VOICE_CONFIG)
        make_channel("ops-api", channel_type=ChannelType.API)
        session = chat_session_start(display_name="Caller", channel_id="voice-test")
        said = speech("I would like to check the status of my order please.", RATE)

        async def call() -> _Call:
            c = _Call(session.token)
            await c.open()
            fmt = await c.wait_for(lambda: c.frame("audio_format"), "the audio format")
            self.assertEqual((fmt["encoding"], fmt["channels"]), ("pcm_s16le", 1))
            await c.wait_for(lambda: c.frame("state"), "a state")
            await c.speak(said)
            transcript = await c.wait_for(lambda: c.frame("transcript"), "the transcript")
            self.assertIn("order", transcript["text"].lower())
            # Someone else in the room writes: the caller hears it.
            await sync_to_async(process_inbound)(
                InboundMessage(
                    channel_id="ops-api", room_id=session.room_id, sender="operator", text="Your order ships tomorrow."
                )
            )
            await c.wait_for(lambda: len(c.audio) > fmt["sample_rate"] * 2 // 2, "half a second of reply audio")
            await c.wait_for(lambda: c.frame("playback_stop"), "the end of playback")
            await c.close()
            return c

        c = asyncio.run(call())
        event = RoomEvent.objects.get(room_id=session.room_id, source_channel_id="voice-test")
        self.assertIn("order", event.content["body"].lower())
        self.assertEqual(event.seq, [f for f in c.frames if f["type"] == "transcript"][0]["seq"])
        states = [f["state"] for f in c.frames if f["type"] == "state"]
        self.assertEqual(states[:2], ["listening", "thinking"])
        self.assertIn("speaking", states)
        # A call hears the room through its socket: no outbox delivery to the voice channel.
        self.assertFalse(Delivery.objects.filter(channel_id="voice-test").exists())
        agent_text = c.frame("agent_text")
        self.assertEqual(agent_text["text"], "Your order ships tomorrow.")
        # The reply is real speech: loud enough to hear, not silence.
        reply = np.frombuffer(bytes(c.audio), dtype="<i2").astype(float)
        self.assertGreater(np.sqrt(np.mean(reply**2)), 300)

    def test_the_demo_agent_answers_a_call_out_loud(self):
        with mock.patch.dict(os.environ, {"OPENAI_API_KEY": ""}):
            call_command("seed_demo", stdout=io.StringIO())
        session = chat_session_start(display_name="Caller", channel_id="voice")
        said = speech("Hello, what time is it?", RATE)

        async def call() -> _Call:
            c = _Call(session.token)
            await c.open()
            fmt = await c.wait_for(lambda: c.frame("audio_format"), "the audio format", timeout=120)
            await c.speak(said)
            await c.wait_for(lambda: c.frame("transcript"), "the transcript")
            await c.wait_for(lambda: c.frame("agent_text"), "the agent's reply")
            await c.wait_for(lambda: len(c.audio) > fmt["sample_rate"], "a second of the agent's speech")
            await c.close()
            return c

        c = asyncio.run(call())
        self.assertIn("time", c.frame("transcript")["text"].lower())
        agent = c.frame("agent_text")
        self.assertIn(agent["agent_id"], ("triage", "specialist"))
        reply = RoomEvent.objects.filter(room_id=session.room_id, source_channel_id=agent["agent_id"]).first()
        self.assertIsNotNone(reply)

    def test_on_handoff_the_new_agent_greets_in_its_own_voice_in_the_same_playback(self):
        from voice import session as voice_session

        with mock.patch.dict(os.environ, {"OPENAI_API_KEY": ""}):
            call_command("seed_demo", stdout=io.StringIO())
        session = chat_session_start(display_name="Caller", channel_id="voice")
        said = speech("I would like to talk to a specialist please.", RATE)
        calls: list = []
        original_init = voice_session.VoiceSession.__init__

        def observed_init(self, *a, **kw):
            original_init(self, *a, **kw)
            calls.append(self)

        def spoken_by(c: _Call, agent_id: str) -> list[int]:
            return [i for i, f in enumerate(c.frames) if f.get("type") == "agent_text" and f.get("agent_id") == agent_id]

        async def call() -> _Call:
            c = _Call(session.token)
            await c.open()
            await c.wait_for(lambda: c.frame("audio_format"), "the audio format", timeout=120)
            await c.speak(said)
            await c.wait_for(
                lambda: any("help you" in c.frames[i]["text"] for i in spoken_by(c, "specialist")), "the greeting", timeout=60
            )

            # The page says it has played what it got (sooner than playing it at real time would).
            def stopped() -> bool:
                return any(f["type"] == "playback_stop" for f in c.frames)

            while not stopped():
                got = len(c.audio)
                await c.send_frame({"type": "playback_done", "samples": got // 2})
                await c.wait_for(lambda got=got: len(c.audio) > got or stopped(), "more speech or the end of the playback")
            await c.close()
            return c

        with mock.patch.object(voice_session.VoiceSession, "__init__", observed_init):
            c = asyncio.run(call())
        triage, specialist = spoken_by(c, "triage"), spoken_by(c, "specialist")
        self.assertIn("transfer you", " ".join(c.frames[i]["text"] for i in triage).lower())
        self.assertLess(triage[0], specialist[0])
        # One playback from the transfer to the greeting: the caller hears no gap between them.
        between = [f["type"] for f in c.frames[triage[0] : specialist[-1]]]
        self.assertNotIn("playback_stop", between)
        self.assertEqual([f["type"] for f in c.frames].count("playback_start"), 1)
        # Each agent in its own voice: the specialist's (espeak-ng, en-gb), the triage's the channel's (Piper).
        [voice_call] = calls
        self.assertIs(voice_call._voices["triage"], voice_call.tts)
        self.assertEqual((voice_call._voices["specialist"].name, voice_call._voices["specialist"].voice), ("espeak", "en-gb"))

    def test_a_recorded_call_links_both_sides_from_the_timeline_until_they_expire(self):
        media_root = tempfile.mkdtemp(prefix="rk-recordings-")
        self.addCleanup(shutil.rmtree, media_root, True)
        config = {"voice": {**VOICE_CONFIG["voice"], "record": True}}
        make_channel("voice-rec", channel_type=ChannelType.VOICE, provider="browser", config=config)
        make_channel("ops-api", channel_type=ChannelType.API)
        session = chat_session_start(display_name="Caller", channel_id="voice-rec")
        said = speech("Please record this call.", RATE)

        async def call() -> None:
            c = _Call(session.token)
            await c.open()
            fmt = await c.wait_for(lambda: c.frame("audio_format"), "the audio format")
            await c.speak(said)
            await c.wait_for(lambda: c.frame("transcript"), "the transcript")
            await sync_to_async(process_inbound)(
                InboundMessage(channel_id="ops-api", room_id=session.room_id, sender="operator", text="Recorded, thank you.")
            )
            await c.wait_for(lambda: len(c.audio) > fmt["sample_rate"], "the reply's audio")
            await c.close()

        with override_settings(MEDIA_ROOT=media_root):
            asyncio.run(call())
            deadline = time.monotonic() + 30
            while not RoomEvent.objects.filter(room_id=session.room_id, type="note").exists():
                self.assertLess(time.monotonic(), deadline, "the recording was never linked")
                time.sleep(0.05)
            note = RoomEvent.objects.get(room_id=session.room_id, type="note")
            self.assertEqual(note.visibility, "internal")
            media = [p for p in note.content["parts"] if p["type"] == "media"]
            self.assertEqual([p["caption"].split()[0] for p in media], ["Caller", "Agent"])
            for part in media:
                self.assertEqual(part["mime_type"], "audio/wav")
                answer = self.client.get(urlsplit(part["url"]).path)
                self.assertEqual(answer.status_code, 200)
                with wave.open(io.BytesIO(b"".join(answer.streaming_content))) as wav:
                    self.assertGreater(wav.getnframes() / wav.getframerate(), 0.5)
            # Kept for ROOMKIT_RECORDING_RETENTION_DAYS, then deleted.
            from voice.services import voice_recordings_expire

            self.assertEqual(voice_recordings_expire(), 0)
            with override_settings(ROOMKIT_RECORDING_RETENTION_DAYS=1):
                self.assertEqual(voice_recordings_expire(timezone.now() + timedelta(days=2)), 2)
            self.assertEqual(self.client.get(urlsplit(media[0]["url"]).path).status_code, 404)

    def test_a_token_for_the_web_chat_is_refused(self):
        session = chat_session_start(display_name="Chatter")

        async def call() -> _Call:
            c = _Call(session.token)
            await c.open()
            await c.wait_for(lambda: c.closed is not None, "a close")
            return c

        self.assertEqual(asyncio.run(call()).closed, 4401)
