"""One call: the caller's audio in, their turns stored as room events, the room's replies spoken back.

A ``VoiceSession`` belongs to one call (a browser page or a phone call) and
lives on the event loop of the socket that carries it. Its transport (the
browser consumer, Twilio's Media Streams consumer) hands it the caller's
audio as 16 kHz PCM and gives it a way to play audio and to stop playback;
everything per call — pipeline state, resamplers, queues — is here.

Listening: the inbound pipeline (``voice.audio``: AGC → denoiser → VAD, DTMF
beside it) finds utterances. Transcription starts at the VAD's *probable*
end, while its hangover still runs, so a turn's text is ready about when the
turn is over (``SpeechEnd`` carries the same audio, so the early transcript is
the final one). A final transcript goes through ``ON_TRANSCRIPTION`` (sync:
may change or block it) and the turn detector (``voice.turns``), and is
stored through the inbound path like any message: operators, other channels
and agents see it.

Speaking: the room's frames reach the session (it is a room-hub sink); an
agent's streamed reply is spoken sentence by sentence as it streams, any
other message in the room (an operator, another channel) when it is stored.
Text-to-speech runs in worker threads and its audio is played as it comes.

Barge-in: while the agent speaks, the caller's speech is judged by the
channel's strategy: ``immediate`` (any speech interrupts), ``confirmed``
(speech that lasts ``interrupt_min_speech_ms``), ``semantic`` (what was said,
unless it is a backchannel), ``disabled`` (never: the caller's turns wait for
the playback to end). An interruption stops playback at once (the transport
flushes what is queued) and drops what was not said yet. Speech during
playback that does not interrupt is taken as echo and dropped (under
``disabled`` it is kept for after the playback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from voice.audio import (
    AudioFrame,
    AutomaticGainControl,
    DtmfDetector,
    EnergySpeechDetector,
    Resampler,
    SileroSpeechDetector,
    SpeexDenoiser,
    VADConfig,
    VoiceActivityDetector,
    WebRtcSpeechDetector,
    inbound_pipeline,
)
from voice.audio.diarization import DiarizationUnavailable, SpeakerDiarizer
from voice.audio.events import AudioEvent, AudioLevel
from voice.audio.levels import Level, LevelMeter
from voice.config import VoiceSettings
from voice.speech import SpeechError, SpeechToText, TextToSpeech, stt_from_config, tts_from_config
from voice.speech.registry import agent_tts_config
from voice.turns import is_backchannel, is_incomplete_turn

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Speech engines and the database calls of a call run here, never on the event loop:
# sized to the cores (the engines are CPU-bound), a few more for threads waiting on I/O.
_WORKER_COUNT = (os.cpu_count() or 2) + 2
_workers = ThreadPoolExecutor(max_workers=_WORKER_COUNT, thread_name_prefix="voice")
# Background work of closed calls, kept referenced until done.
_detached: set[asyncio.Future] = set()
_TAKEN = object()  # marks an early transcript that already ended its turn
# Keypad digits are given to the agent after ``#`` or this long without another key.
KEYPAD_PAUSE_SECONDS = 1.5
# How often the level hooks (ON_INPUT_AUDIO_LEVEL, ON_OUTPUT_AUDIO_LEVEL) report, in stream time.
LEVEL_INTERVAL_MS = 100
# Where a reply is cut into pieces spoken one by one: sentence ends, and clause marks (a colon,
# a dash, a closing bracket), so the first piece is short and its audio comes early.
_SENTENCE_END = re.compile(r"(?<=[.!?;:\]—–])\s+|\n+")
# Written-only marks that speech engines would read out or stumble on.
_UNSPOKEN = re.compile(r"[\[\]*_#`|<>{}]+|https?://\S+")


def run_blocking(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """``fn(*args)`` on the voice worker threads (speech engines, database), awaited from the loop."""
    return asyncio.get_running_loop().run_in_executor(_workers, fn, *args)


def workers_restart() -> None:
    """Replace the voice worker threads with new ones, once the old ones have finished their work.

    For the test runner: each thread keeps its own database connection, which
    PostgreSQL counts as a user of the test database it is asked to drop; the
    connections go with their threads.
    """
    global _workers
    old, _workers = _workers, ThreadPoolExecutor(max_workers=_WORKER_COUNT, thread_name_prefix="voice")
    old.shutdown(wait=True)


class VoiceTransport(Protocol):
    """What a call's carrier does for its session.

    A carrier that learns from its far end what the caller has heard (Twilio's
    echoed marks) also has ``heard_ms``: how much of the current playback
    has been played to the caller. Without it, playback is taken to run at
    real time from its start.
    """

    # The rate of the PCM ``play`` takes (the transport converts it to what its wire carries).
    output_rate: int

    async def play(self, pcm: bytes) -> None:
        """Queue speech for the caller (16-bit mono PCM at ``output_rate``)."""

    async def stop_playback(self) -> None:
        """Drop everything queued for the caller, at once (barge-in)."""

    async def control(self, frame: dict[str, Any]) -> None:
        """A control frame for the caller's side (the browser shows state and text; a phone ignores most)."""


@dataclass
class CallParty:
    """Who the caller is in the room: what their turns are stored as."""

    channel_id: str
    room_id: str
    participant_id: str
    sender: str
    display_name: str = ""
    reserved_room: bool = False


class Turns:
    """Stores turns and fires the voice hooks: the session's only way into the rest of the system.

    A class of its own so that the session's audio logic has no database or
    hook code in it (and tests of timing can replace it).
    """

    def __init__(self, party: CallParty) -> None:
        self.party = party

    def store(self, text: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """Store a final transcript as the caller's message (after ``ON_TRANSCRIPTION``); its event, or None if blocked."""
        from voice.services import voice_turn_store

        return voice_turn_store(self.party, text, metadata)

    def fire(self, trigger: str, payload: dict[str, Any]) -> None:
        from voice.services import voice_hook_fire

        voice_hook_fire(self.party, trigger, payload)

    def store_recording(self, recorder: Any) -> None:
        from voice.services import voice_recording_store

        voice_recording_store(self.party, recorder.finish())
        self.fire("on_recording_stopped", {})

    def reply_heard(self, event_id: str, heard_text: str) -> None:
        from voice.services import voice_reply_heard

        voice_reply_heard(self.party, event_id, heard_text)

    def before_tts(self, text: str) -> str | None:
        from voice.services import voice_before_tts

        return voice_before_tts(self.party, text)

    def agent_voice(self, agent_id: str) -> str:
        from voice.services import agent_voice

        return agent_voice(agent_id)


def speech_engines(settings: VoiceSettings) -> tuple[SpeechToText, TextToSpeech]:
    """The channel's speech engines; the first call for a config loads its models: run it off the event loop."""
    return stt_from_config(settings.stt), tts_from_config(settings.tts)


def build_listener(settings: VoiceSettings) -> tuple[Any, VoiceActivityDetector]:
    """The inbound pipeline for one call at 16 kHz, and its VAD (the session asks it whether the caller is speaking)."""
    if settings.detector == "silero":
        detector: Any = SileroSpeechDetector(SAMPLE_RATE)
    elif settings.detector == "energy":
        detector = EnergySpeechDetector(SAMPLE_RATE)
    else:
        detector = WebRtcSpeechDetector(SAMPLE_RATE)
    vad = VoiceActivityDetector(
        detector,
        VADConfig(
            min_speech_ms=settings.min_speech_ms,
            probable_end_ms=settings.probable_end_ms,
            end_silence_ms=max(settings.end_silence_ms, settings.probable_end_ms + 20),
        ),
    )
    pipeline = inbound_pipeline(
        agc=AutomaticGainControl() if settings.agc else None,
        denoiser=SpeexDenoiser(SAMPLE_RATE) if settings.denoise else None,
        vad=vad,
        dtmf=DtmfDetector(SAMPLE_RATE),
        native=settings.native,
    )
    return pipeline, vad


class VoiceSession:
    def __init__(
        self,
        transport: VoiceTransport,
        party: CallParty,
        settings: VoiceSettings,
        *,
        stt: SpeechToText | None = None,
        tts: TextToSpeech | None = None,
        turns: Turns | None = None,
    ) -> None:
        self.transport = transport
        self.party = party
        self.settings = settings
        self.stt = stt or stt_from_config(settings.stt)
        self.tts = tts or tts_from_config(settings.tts)
        self._voices: dict[str, TextToSpeech] = {}  # agent id -> the engine it speaks with on this call
        self.turns = turns or Turns(party)
        self.pipeline, self.vad = build_listener(settings)
        self._recorder: Any = None  # voice.recording.CallRecorder while the call is recorded
        self._diarizer = SpeakerDiarizer() if settings.diarization else None
        self.state = ""
        self.closed = False
        # Listening.
        self._audio_ms = 0.0  # stream time of the caller's audio fed so far
        self._early: tuple[Any, asyncio.Future] | None = None  # transcript started at the probable end
        self._taken = 0  # bytes of the open utterance already taken as a turn (an early transcript)
        self._speech_started_ms: float | None = None
        self._partial: asyncio.Future | None = None  # a transcript of the speech so far, on its way
        self._partial_from_ms = 0.0  # where the speech the next partial waits for began (VAD clock)
        self._held_turn: list[str] = []  # an incomplete turn's text, waiting for the rest
        self._held_timer: asyncio.TimerHandle | None = None
        self._deferred: list[tuple[str, dict[str, Any]]] = []  # turns kept until playback ends ("disabled")
        self._turn_tasks: set[asyncio.Task] = set()
        self._keys: list[str] = []  # keypad digits not yet given to the agent
        self._keys_timer: asyncio.TimerHandle | None = None
        # Speaking.
        self._say: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()  # (text, agent id, reply)
        self._queued = asyncio.Event()  # set when a piece is queued
        self._speaking = False
        self._stop_synthesis = threading.Event()
        self._streams: dict[str, dict[str, str]] = {}  # stream id -> {"agent_id", "pending", "text"}
        self._spoken_events: set[str] = set()  # replies said from their stream, whose event frame is still to come
        self._played_ms = 0.0
        self._pieces: list[_Piece] = []  # what this playback said, piece by piece, on its audio clock
        self._heard: dict[str, str] = {}  # reply -> what the caller heard of it, when it was cut
        self._reply_events: dict[str, str] = {}  # "stream:<id>" -> the event that holds the reply
        self.saying = False  # a piece of a reply is being synthesized and sent
        self._playback_id = 0  # moves on at each interruption: a piece already taken from the queue is dropped
        self._preparing: str | None = None  # the reply of the piece in before_tts hooks, not yet playing
        self._playback_started = 0.0
        self._sent_samples = 0  # audio sent to the caller's side in this playback (at output_rate)
        self._heard_samples = 0  # of which its side has said it played
        self._output = _Output(transport.output_rate)
        self._input_levels = LevelMeter(SAMPLE_RATE, LEVEL_INTERVAL_MS)  # the caller's audio as it arrives
        self._output_levels = LevelMeter(transport.output_rate, LEVEL_INTERVAL_MS)  # the speech sent to them
        # When this turn's steps happened (perf_counter seconds), for the latency bench and the logs:
        # probable_end, speech_end, stt_done, turn_stored, reply_text, first_audio.
        self.timeline: dict[str, float] = {}
        self._speaker = asyncio.ensure_future(self._speak_loop())

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.record:
            from voice.recording import CallRecorder

            self._recorder = CallRecorder()
            self._fire("on_recording_started", {})
        await self._set_state("listening")

    async def close(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            self._track_detached(run_blocking(self.turns.store_recording, recorder))
        self.closed = True
        self._stop_synthesis.set()
        self._speaker.cancel()
        if self._held_timer:
            self._held_timer.cancel()
        if self._keys_timer:
            self._keys_timer.cancel()
        for task in list(self._turn_tasks):
            task.cancel()

    async def _set_state(self, state: str) -> None:
        if state != self.state and not self.closed:
            self.state = state
            await self.transport.control({"type": "state", "state": state})

    # --- the caller's audio --------------------------------------------------------------------

    async def feed(self, pcm: bytes) -> None:
        """The caller's audio: 16-bit mono PCM at 16 kHz, any length."""
        if self.closed or not pcm:
            return
        frame = AudioFrame(pcm, SAMPLE_RATE)
        self._audio_ms += frame.duration_ms
        if self._recorder is not None:
            self._recorder.inbound(frame)
        if self._wants("on_input_audio_level"):  # metered only for a hook: every 100 ms of every call
            for level in self._input_levels.feed(pcm):
                self._fire("on_input_audio_level", _level_payload(level))
        out = self.pipeline.process(frame)
        for event in out.events:
            await self._on_audio_event(event)
        if self._partial_due():
            self._start_partial()
        if self._speech_started_ms is not None and self._speaking and self.settings.interruption == "confirmed":
            # Confirmed: the caller's speech has lasted the threshold (a cough or a word of echo has not).
            if self.vad.speaking and self.vad.last_voiced_ms - self._speech_started_ms >= self.settings.interrupt_min_speech_ms:
                await self.interrupt("barge_in")

    async def _on_audio_event(self, event: AudioEvent) -> None:
        kind = event.kind
        if kind == "speech_start":
            self._speech_started_ms = self._partial_from_ms = event.at_ms  # where the speech began, on the VAD's clock
            self.timeline = {}
            self._cancel_held_timer()
            self._fire("on_speech_start", {})
            if self._speaking and self.settings.interruption == "immediate":
                await self.interrupt("barge_in")
        elif kind == "speech_probable_end":
            self.timeline["probable_end"] = time.perf_counter()
            self._fire("on_vad_silence", {"silence_ms": round(event.at_ms - event.last_voiced_ms)})
            # Transcribe while the hangover runs. If the caller is still quiet when the text is
            # ready, the turn ends there, without waiting for the rest of the hangover.
            pcm = event.pcm[self._taken :]
            future = asyncio.ensure_future(run_blocking(self.stt.transcribe, pcm, event.sample_rate))
            self._early = (pcm, future)
            future.add_done_callback(lambda f, rate=event.sample_rate: self._early_ready(f, rate))
        elif kind == "speech_resumed":
            early, self._early = self._early, None
            if early is not None and early[0] is _TAKEN:
                # The caller goes on after their turn was taken: a new stretch of speech, which
                # may interrupt the reply the way a new utterance would.
                self._speech_started_ms = self._partial_from_ms = event.at_ms
                self.timeline = {}
                if self._speaking and self.settings.interruption == "immediate":
                    await self.interrupt("barge_in")
            elif early is not None:
                early[1].cancel()  # a guess that came too soon: its worker thread goes to the next turn
        elif kind == "speech_end":
            self.timeline["speech_end"] = time.perf_counter()
            self._speech_started_ms = None
            self._fire("on_speech_end", {"duration_ms": len(event.pcm) / 2 / event.sample_rate * 1000})
            taken, self._taken = self._taken, 0
            early, self._early = self._early, None
            pcm = event.pcm[taken:]
            if early is not None and early[0] is _TAKEN:
                return  # this utterance's turn was taken when its early transcript came
            pending = early[1] if early is not None and early[0] == pcm else None
            if pcm:
                self._track(self._finish_utterance(pcm, event.sample_rate, pending))
        elif kind == "dtmf":
            await self.dtmf(event.digit)
        elif kind == "audio_level":
            self._fire("on_vad_audio_level", {**_level_payload(event), "speaking": event.speaking})

    def _partial_due(self) -> bool:
        """Whether to transcribe the speech so far: ``partial_interval_ms`` more of it, and nothing else to do.

        Never while the agent speaks (it may be echo), in a pause (the turn
        may be ending: the worker is kept for its final transcript), or while
        a partial or a final transcript is on its way.
        """
        interval = self.settings.partial_interval_ms
        return bool(
            interval
            and self._speech_started_ms is not None
            and self._partial is None
            and self._early is None
            and not self._speaking
            and self.vad.speaking
            and self._audio_ms - self.vad.last_voiced_ms <= 100
            and self.vad.last_voiced_ms - self._partial_from_ms >= interval
        )

    def _start_partial(self) -> None:
        pcm = self.vad.utterance_pcm()[self._taken :]
        speech = self._speech_started_ms
        self._partial_from_ms = self.vad.last_voiced_ms
        self._partial = future = asyncio.ensure_future(run_blocking(self.stt.transcribe, pcm, SAMPLE_RATE))
        future.add_done_callback(lambda f: self._track(self._partial_ready(f, speech)))

    async def _partial_ready(self, future: asyncio.Future, speech: float | None) -> None:
        """Show the caller what was heard so far, unless their speech has ended (its final transcript says it)."""
        self._partial = None
        if future.cancelled() or future.exception() is not None or self.closed or self._speech_started_ms != speech:
            return
        text = (future.result().text or "").strip()
        if text:
            await self.transport.control({"type": "partial_transcript", "text": " ".join([*self._held_turn, text])})
            self._fire("on_partial_transcription", {"text": text})

    def _early_ready(self, future: asyncio.Future, rate: int) -> None:
        """An early transcript is ready: the turn ends now if the caller has stayed quiet since."""
        early = self._early
        if early is None or early[1] is not future or self.closed:  # None: the caller resumed
            return
        pcm = early[0]
        # The utterance stays open in the VAD until its hangover ends; what it hears next
        # (the caller resuming) is a continuation, transcribed from here on.
        self._taken += len(pcm)
        self._early = (_TAKEN, future)
        # The turn is over: its speech must not count towards interrupting its own reply, which
        # can start while the VAD's hangover still holds the utterance open.
        self._speech_started_ms = None
        self._track(self._finish_utterance(pcm, rate, future))

    async def dtmf(self, digit: str) -> None:
        """A key the caller pressed (heard in the audio, or reported by the transport: Twilio's ``dtmf``).

        ``ON_DTMF`` fires for each key (a hook may route on it). The keys are
        also given to the agent: collected until ``#`` or a pause of
        ``KEYPAD_PAUSE_SECONDS``, then stored as the caller's turn
        ("Keypad: 1234").
        """
        await self.transport.control({"type": "dtmf", "digit": digit})
        self._fire("on_dtmf", {"digit": digit})
        if self._keys_timer is not None:
            self._keys_timer.cancel()
            self._keys_timer = None
        if digit == "#":
            self._track(self._keys_done())
            return
        self._keys.append(digit)
        loop = asyncio.get_running_loop()
        self._keys_timer = loop.call_later(KEYPAD_PAUSE_SECONDS, lambda: self._track(self._keys_done()))

    async def _keys_done(self) -> None:
        keys, self._keys = "".join(self._keys), []
        self._keys_timer = None
        if keys:
            self._held_turn.append(f"Keypad: {keys}")
            await self._complete_turn({"voice": {"dtmf": keys}})

    @staticmethod
    def _track_detached(work: Awaitable[Any]) -> None:
        """Work that outlives the call (storing its recording): not cancelled when the call closes."""
        task = asyncio.ensure_future(work)
        _detached.add(task)
        task.add_done_callback(_detached.discard)

    def _track(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)

    async def _finish_utterance(self, pcm: bytes, rate: int, pending: asyncio.Future | None) -> None:
        """The caller stopped: their words, then what they mean for the turn and for the agent speaking."""
        was_speaking = self._speaking
        if was_speaking and self.settings.interruption in ("immediate", "confirmed"):
            # Speech that did not interrupt (too short to be confirmed) while the agent spoke: its echo, or noise.
            return
        started = time.perf_counter()
        # Who spoke, found beside the transcript (on another worker thread, in its shadow).
        speaker = asyncio.ensure_future(self._who_spoke(pcm, rate)) if self._diarizer is not None else None
        try:
            transcript = await (pending if pending is not None else run_blocking(self.stt.transcribe, pcm, rate))
        except SpeechError as exc:
            logger.warning("voice call in room %s: transcription failed: %s", self.party.room_id, exc)
            return
        self.timeline["stt_done"] = time.perf_counter()
        text = (transcript.text or "").strip()
        if not text or self.closed:
            return
        stt_ms = (time.perf_counter() - started) * 1000
        if was_speaking and self.settings.interruption == "semantic":
            if is_backchannel(text):
                self._fire("on_backchannel", {"text": text})
                return
            await self.interrupt("barge_in")
        metadata = {"voice": {"stt_ms": round(stt_ms, 1), "audio_ms": round(len(pcm) / 2 / rate * 1000)}}
        if speaker is not None and (label := await speaker):
            metadata["voice"]["speaker"] = label
        if self._speaking and self.settings.interruption == "disabled":
            self._deferred.append((text, metadata))  # after the playback, in order
            return
        await self._turn(text, metadata)

    async def _who_spoke(self, pcm: bytes, rate: int) -> str | None:
        """The caller's speaker label for this utterance (diarization); fires ``ON_SPEAKER_CHANGE`` when it changed."""
        diarizer = self._diarizer
        previous = diarizer.current
        try:
            turn = await run_blocking(diarizer.identify, pcm, rate)
        except DiarizationUnavailable as exc:
            logger.warning("voice call in room %s: %s; diarization is off for this call", self.party.room_id, exc)
            self._diarizer = None
            return None
        except Exception:  # the turn goes on without its speaker
            logger.exception("voice call in room %s: diarization failed", self.party.room_id)
            return None
        if turn is None:
            return previous
        if previous is not None and turn.speaker != previous:
            self._fire(
                "on_speaker_change",
                {"speaker": turn.speaker, "previous": previous, "new_speaker": turn.new, "similarity": turn.similarity},
            )
        return turn.speaker

    async def _turn(self, text: str, metadata: dict[str, Any]) -> None:
        """A final piece of the caller's turn; an incomplete one waits a little for the rest."""
        self._held_turn.append(text)
        whole = " ".join(self._held_turn)
        if is_incomplete_turn(whole) and self.settings.incomplete_turn_wait_ms > 0:
            self._fire("on_turn_incomplete", {"text": whole})
            await self.transport.control({"type": "partial_transcript", "text": whole})
            self._cancel_held_timer()
            loop = asyncio.get_running_loop()
            self._held_timer = loop.call_later(
                self.settings.incomplete_turn_wait_ms / 1000, lambda: self._track(self._complete_turn(metadata))
            )
            return
        await self._complete_turn(metadata)

    def _cancel_held_timer(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    async def _complete_turn(self, metadata: dict[str, Any]) -> None:
        self._cancel_held_timer()
        text, self._held_turn = " ".join(self._held_turn), []
        if not text:
            return
        self._fire("on_turn_complete", {"text": text})
        await self._set_state("thinking")
        event = await run_blocking(self.turns.store, text, metadata)
        self.timeline["turn_stored"] = time.perf_counter()
        if event is None:
            await self._set_state("listening")
            return
        await self.transport.control({"type": "transcript", "text": event["text"], "event_id": event["id"], "seq": event["seq"]})

    # --- the room's replies ---------------------------------------------------------------------

    async def room_message(self, message: dict[str, Any]) -> None:
        """A room-hub message for the call's socket (its ``text`` is the frame the chat page would get)."""
        text = message.get("text")
        if not text or self.closed:
            return
        try:
            frame = json.loads(text)
        except ValueError:
            return
        await self.room_frame(frame)

    async def room_frame(self, frame: dict[str, Any]) -> None:
        """A frame of the room (as the chat page gets them): replies to speak."""
        kind = frame.get("type")
        if kind == "stream_start":
            self._streams[frame["stream_id"]] = {"agent_id": frame.get("agent_id", ""), "pending": "", "text": ""}
        elif kind == "stream_chunk":
            stream = self._streams.get(frame.get("stream_id", ""))
            if stream is not None:
                stream["pending"] += frame.get("delta", "")
                stream["text"] += frame.get("delta", "")
                sentences = _SENTENCE_END.split(stream["pending"])
                stream["pending"] = sentences.pop()  # the unfinished one
                for sentence in sentences:
                    await self._say_streamed(sentence, stream["agent_id"], frame["stream_id"])
        elif kind == "stream_end":
            stream = self._streams.pop(frame.get("stream_id", ""), None)
            if stream is None:
                return
            if frame.get("abandoned"):
                return
            await self._say_streamed(stream["pending"], stream["agent_id"], frame["stream_id"])
            reply, event_id = f"stream:{frame['stream_id']}", frame.get("event_id")
            if event_id:
                if self._reply_events.get(reply) != event_id:  # its event frame is still to come
                    self._spoken_events.add(event_id)
                self._reply_events[reply] = event_id
                self._record_heard(reply)
        elif kind == "event":
            await self._room_event(frame.get("event") or {})

    async def _say_streamed(self, sentence: str, agent_id: str, stream_id: str) -> None:
        """A sentence of a streamed reply: shown (``agent_text``, one per sentence) and spoken."""
        if sentence.strip():
            reply = f"stream:{stream_id}"
            await self.transport.control({"type": "agent_text", "text": sentence.strip(), "agent_id": agent_id, "reply": reply})
            self._queue_speech(sentence, agent_id, reply)

    async def _room_event(self, event: dict[str, Any]) -> None:
        source = event.get("source") or {}
        if event.get("id") in self._spoken_events:
            self._spoken_events.discard(event["id"])
            return
        if event.get("type") != "message" or source.get("participant_id") == self.party.participant_id:
            return
        agent_id = source.get("channel_id") or ""
        text = _spoken_text(event.get("content") or {})
        streaming = _stream_of(self._streams, agent_id, text)
        if streaming is not None:
            # The reply this agent is streaming, stored before its stream ends (the order the room
            # publishes them in): the stream says it, sentence by sentence; this is only its event.
            self._reply_events[f"stream:{streaming}"] = event.get("id", "")
            return
        if text:
            await self.transport.control({"type": "agent_text", "text": text, "agent_id": agent_id, "reply": event.get("id", "")})
            for sentence in _SENTENCE_END.split(text):
                self._queue_speech(sentence, agent_id, event.get("id", ""))

    def _queue_speech(self, text: str, agent_id: str, reply: str = "") -> None:
        """Queue a piece of a reply; ``reply`` is its event id, or ``stream:<id>`` until the stream's event is known."""
        text = _UNSPOKEN.sub(" ", text).strip()
        if text and not self.closed:
            self.timeline.setdefault("reply_text", time.perf_counter())
            self._say.put_nowait((text, agent_id, reply))
            self._queued.set()

    async def _speak_loop(self) -> None:
        while True:
            item = await self._next_speech()
            if item is None:
                await self._playback_over("done")
                continue
            self.saying = True
            try:
                await self._speak(*item)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("voice call in room %s: speaking failed", self.party.room_id)
            finally:
                self.saying = False

    async def _next_speech(self) -> tuple[str, str, str] | None:
        """The next piece to say; None once everything said has been heard (the playback is over).

        Audio goes out faster than it plays: the caller is still hearing the
        reply for a while after the last piece was sent, and barge-in must
        still apply then. The playback is over when its audio has had time to
        play (from when it started), or when the caller's side says it has
        (``playback_drained``), whichever comes first.
        """
        while True:
            timeout = None
            if self._speaking:
                remaining = self._playback_started + self._played_ms / 1000 - time.perf_counter()
                if remaining <= 0 or (self._heard_samples >= self._sent_samples and self._say.empty()):
                    return None
                timeout = min(remaining, 0.05)
            if not self._say.empty():
                # Taken in the step that starts saying it (never ``await queue.get()``, which can
                # hold a piece in transit where an interruption emptying the queue misses it).
                return self._say.get_nowait()
            self._queued.clear()
            try:
                await asyncio.wait_for(self._queued.wait(), timeout)
            except TimeoutError:
                pass

    def playback_drained(self, samples: int | None = None) -> None:
        """The caller's side has played ``samples`` of this playback (at ``output_rate``), or all that was sent (None).

        The page counts what it received since ``playback_start``; Twilio's
        echoed marks say everything sent was heard. Counting samples, not
        comparing times, keeps a late report about the earlier audio from
        ending a playback that has more to play.
        """
        heard = self._sent_samples if samples is None else samples
        self._heard_samples = max(self._heard_samples, heard)

    async def _speak(self, text: str, agent_id: str, reply: str = "") -> None:
        playback = self._playback_id
        self._preparing = reply
        try:
            text = await run_blocking(self.turns.before_tts, text)
            tts = await self._voice_of(agent_id)
        finally:
            self._preparing = None
        if not text or playback != self._playback_id:
            return  # nothing to say, or the caller interrupted the playback this piece belonged to
        piece = _Piece(reply, text, self._played_ms)
        self._pieces.append(piece)
        if not self._speaking:
            self._speaking = True
            self._played_ms = 0.0
            self._playback_started = time.perf_counter()
            self._sent_samples = self._heard_samples = 0
            await self._set_state("speaking")
            await self.transport.control({"type": "playback_start"})
        self._stop_synthesis.clear()
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = self._stop_synthesis

        def synthesize() -> None:
            audio = tts.synthesize(text)
            try:
                for chunk in audio:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except SpeechError as exc:
                logger.warning("voice call: speech synthesis failed: %s", exc)
            finally:
                audio.close()
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        _workers.submit(synthesize)
        rate = tts.sample_rate
        while (chunk := await chunks.get()) is not None:
            if stop.is_set() or self.closed:
                continue  # drain what the thread still sends
            self.timeline.setdefault("first_audio", time.perf_counter())
            await self._play(self._output.convert(chunk, rate))
            self._played_ms += len(chunk) / 2 / rate * 1000
            piece.end_ms = self._played_ms
        tail = self._output.finish(rate)
        if not stop.is_set():
            if tail:
                await self._play(tail)
            self._fire("after_tts", {"text": text, "agent_id": agent_id})

    async def _voice_of(self, agent_id: str) -> TextToSpeech:
        """The engine ``agent_id`` speaks with on this call: in its own voice, else the channel's (looked up once)."""
        tts = self._voices.get(agent_id)
        if tts is not None:
            return tts
        tts = self.tts
        if agent_id:
            try:
                config = agent_tts_config(self.settings.tts, await run_blocking(self.turns.agent_voice, agent_id))
                if config is not self.settings.tts:
                    tts = await run_blocking(tts_from_config, config)
            except Exception as exc:  # a voice that cannot be had must not silence the agent
                room = self.party.room_id
                logger.warning("voice call in room %s: agent %s speaks in the channel's voice: %s", room, agent_id, exc)
        self._voices[agent_id] = tts
        return tts

    async def _play(self, pcm: bytes) -> None:
        self._sent_samples += len(pcm) // 2
        if self._wants("on_output_audio_level"):
            for level in self._output_levels.feed(pcm):
                self._fire("on_output_audio_level", _level_payload(level))
        if self._recorder is not None and pcm:
            self._recorder.outbound(AudioFrame(pcm, self.transport.output_rate))
        await self.transport.play(pcm)

    async def interrupt(self, reason: str) -> None:
        """Stop the agent's playback now and drop what it had not said yet."""
        if not self._speaking:
            return
        self._stop_synthesis.set()
        self._playback_id += 1
        unsaid = set() if self._preparing is None else {self._preparing}
        while not self._say.empty():
            unsaid.add(self._say.get_nowait()[2])
        heard_ms = getattr(self.transport, "heard_ms", None)
        if heard_ms is None:  # the caller's side plays at real time from the start of the playback
            heard_ms = (time.perf_counter() - self._playback_started) * 1000
        await self.transport.stop_playback()
        self._cut_replies(heard_ms, unsaid)
        if reason == "barge_in":
            await self.transport.control({"type": "barge_in"})
            self._fire("on_barge_in", {"played_ms": round(self._played_ms), "heard_ms": round(heard_ms)})
        self._fire("on_tts_cancelled", {"reason": reason})
        await self._playback_over(reason)

    def _cut_replies(self, heard_ms: float, unsaid: set[str]) -> None:
        """What the caller heard of each reply this playback carried (the rest was never heard)."""
        heard: dict[str, list[str]] = {}
        cut: set[str] = set(unsaid)
        for piece in self._pieces:
            said = heard.setdefault(piece.reply, [])
            if piece.end_ms <= heard_ms:
                said.append(piece.text)
                continue
            cut.add(piece.reply)
            span = piece.end_ms - piece.start_ms
            if span > 0 and heard_ms > piece.start_ms:
                words = piece.text.split()
                said.append(" ".join(words[: int(len(words) * (heard_ms - piece.start_ms) / span)]))
        for reply in cut:
            if reply:
                self._heard[reply] = " ".join(t for t in heard.get(reply, []) if t).strip()
                self._record_heard(reply)

    def _record_heard(self, reply: str) -> None:
        """Keep what the caller heard of an interrupted reply, once its event is known."""
        event_id = self._reply_events.get(reply) or (reply if reply and not reply.startswith("stream:") else "")
        if event_id and reply in self._heard:
            self._track_detached(run_blocking(self.turns.reply_heard, event_id, self._heard.pop(reply)))

    async def _playback_over(self, reason: str) -> None:
        if not self._speaking:
            return
        self._speaking = False
        self._pieces = []
        await self.transport.control({"type": "playback_stop", "reason": reason})
        await self._set_state("listening")
        deferred, self._deferred = self._deferred, []
        for text, metadata in deferred:
            await self._turn(text, metadata)

    def _wants(self, trigger: str) -> bool:
        """Whether a hook listens for ``trigger`` on this call's channel (else the event need not be made)."""
        from voice.services import hooks_listen

        return hooks_listen(trigger, self.party.channel_id)

    def _fire(self, trigger: str, payload: dict[str, Any]) -> None:
        if self._wants(trigger):
            _workers.submit(self.turns.fire, trigger, payload)


def _level_payload(level: Level | AudioLevel) -> dict[str, float]:
    return {"rms_dbfs": round(level.rms_dbfs, 1), "peak_dbfs": round(level.peak_dbfs, 1)}


def _stream_of(streams: dict[str, dict[str, str]], agent_id: str, text: str) -> str | None:
    """The open stream of ``agent_id`` whose text so far begins ``text`` (the reply it is streaming), if any."""
    stored = " ".join(text.split())
    for stream_id, stream in streams.items():
        so_far = " ".join(stream["text"].split())
        if agent_id and stream["agent_id"] == agent_id and so_far and stored.startswith(so_far):
            return stream_id
    return None


def _spoken_text(content: dict[str, Any]) -> str:
    """What of a message can be said: its text, or the text parts of a composite; a caption."""
    kind = content.get("type")
    if kind == "text":
        return str(content.get("body") or "")
    if kind == "composite":
        return " ".join(_spoken_text(p) for p in content.get("parts") or [] if isinstance(p, dict)).strip()
    if kind == "media":
        return str(content.get("caption") or "")
    if kind == "rich":
        return str(content.get("plain_text") or content.get("body") or "")
    return ""


@dataclass
class _Piece:
    """A piece of a reply as played: which reply, its text, where its audio starts and ends (ms into the playback)."""

    reply: str
    text: str
    start_ms: float
    end_ms: float = 0.0

    def __post_init__(self) -> None:
        self.end_ms = self.start_ms


class _Output:
    """TTS audio converted to the transport's rate, with the call's own resamplers (one per engine rate)."""

    def __init__(self, out_rate: int) -> None:
        self.out_rate = out_rate
        self._resamplers: dict[int, Resampler] = {}

    def convert(self, pcm: bytes, rate: int) -> bytes:
        if rate == self.out_rate:
            return pcm
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = Resampler(rate, self.out_rate)
        return resampler.process(AudioFrame(pcm, rate)).pcm

    def finish(self, rate: int) -> bytes:
        """What the resampler still holds of a sentence (its last 10 ms); it starts clean for the next."""
        resampler = self._resamplers.get(rate)
        if resampler is None:
            return b""
        tail = resampler.flush().pcm
        resampler.reset()
        return tail


def json_frame(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
