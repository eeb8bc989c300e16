"""Turn-taking and barge-in in a call's session, with real speech through the real pipeline.

The caller's audio is espeak-ng speech fed in 20 ms frames (faster than real
time: what counts is the audio's own clock, ``session._audio_ms``); the agent
speaks with espeak-ng through the real TTS engine. Two things are stand-ins:
the transport records what would go to the caller, and a scripted
speech-to-text engine (the ``SpeechToText`` protocol, like a vendor's fake)
says what each utterance was, so each strategy's decision is tested on known
words. Storing turns is recorded instead of written (``Turns`` is the
session's only door to the database).
"""

from __future__ import annotations

import asyncio
import time
import unittest
from typing import Any

import numpy as np
from django.test import tag

from tests.voice.audio_samples import speech
from voice.config import VoiceSettings
from voice.session import CallParty, Turns, VoiceSession
from voice.speech import Transcript, tts_from_config

RATE = 16000
FRAME = 640  # 20 ms of 16-bit PCM at 16 kHz


class RecordingTransport:
    output_rate = 22050

    def __init__(self, session_ref: list) -> None:
        self.session_ref = session_ref
        self.audio = bytearray()
        self.controls: list[tuple[float, dict[str, Any]]] = []  # (caller audio ms when sent, frame)
        self.stopped = 0

    def _now(self) -> float:
        return self.session_ref[0]._audio_ms if self.session_ref else 0.0

    async def play(self, pcm: bytes) -> None:
        self.audio += pcm

    async def stop_playback(self) -> None:
        self.stopped += 1

    async def control(self, frame: dict[str, Any]) -> None:
        self.controls.append((self._now(), frame))

    def kinds(self) -> list[str]:
        return [f["type"] for _, f in self.controls]

    def first(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        return next(((at, f) for at, f in self.controls if f["type"] == kind), None)


class ScriptedSTT:
    """Speech-to-text that says what each utterance was, in order (the protocol of ``voice.speech``)."""

    name = "scripted"
    sample_rate = RATE
    streaming = False

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.heard_ms: list[float] = []
        self._last: tuple[bytes, str] | None = None

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        self.heard_ms.append(len(pcm) / 2 / sample_rate * 1000)
        if self._last is not None and pcm.startswith(self._last[0]):
            # The same utterance again, longer: a transcript started at a pause the caller went
            # on from (the session drops it), then the utterance's own.
            text = self._last[1]
        else:
            text = self.texts.pop(0) if self.texts else ""
        self._last = (pcm, text)
        return Transcript(text, None, "en", 0)


class RecordedTurns(Turns):
    def __init__(self, party: CallParty) -> None:
        super().__init__(party)
        self.stored: list[str] = []
        self.fired: list[tuple[str, dict]] = []
        self.heard: list[tuple[str, str]] = []
        self.voices: dict[str, str] = {}
        self.metadata: list[dict[str, Any]] = []

    def agent_voice(self, agent_id: str) -> str:
        return self.voices.get(agent_id, "")

    def reply_heard(self, event_id: str, heard_text: str) -> None:
        self.heard.append((event_id, heard_text))

    def store(self, text: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
        self.stored.append(text)
        self.metadata.append(metadata)
        return {"id": f"ev{len(self.stored)}", "seq": len(self.stored), "text": text}

    def fire(self, trigger: str, payload: dict[str, Any]) -> None:
        self.fired.append((trigger, payload))

    def before_tts(self, text: str) -> str | None:
        return text


LONG_REPLY = (
    "Thank you for calling. I am going to read you a long list of our opening hours. "
    "On Monday we open at nine and close at five. On Tuesday we open at nine and close at six. "
    "On Wednesday we open at ten and close at five."
)


async def until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait for ``condition()``; the machine may be busy, so the limit is generous and only a failure waits it out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.01)


@tag("no_db")
class TurnTakingTests(unittest.TestCase):
    def run_call(self, strategy: str, stt_texts: list[str], script, **settings: Any) -> tuple[VoiceSession, Any]:
        """Start a session, let the agent start ``LONG_REPLY``, then run ``script(session)``; the session and transport."""
        ref: list = []
        transport = RecordingTransport(ref)
        party = CallParty(channel_id="voice", room_id="room", participant_id="caller", sender="caller")
        turns = RecordedTurns(party)
        stt = ScriptedSTT(stt_texts)

        async def run() -> VoiceSession:
            session = VoiceSession(
                transport,
                party,
                VoiceSettings(interruption=strategy, **settings),
                stt=stt,
                tts=tts_from_config({"provider": "espeak"}),
                turns=turns,
            )
            ref.append(session)
            session._fire = lambda trigger, payload: turns.fired.append((trigger, payload))  # every hook, in order
            await session.start()
            await script(session)
            await until(lambda: not session._turn_tasks, "the turns in flight to settle")
            await session.close()
            return session

        session = asyncio.run(run())
        return session, transport, turns, stt

    @staticmethod
    async def agent_speaks(session: VoiceSession) -> None:
        await session.room_frame(
            {"type": "event", "event": {"id": "r1", "type": "message", "source": {"participant_id": "agent", "channel_id": "agent"},
                                        "content": {"type": "text", "body": LONG_REPLY}}}
        )  # fmt: skip
        await until(lambda: session._speaking, "the agent to start speaking")

    @staticmethod
    async def caller_says(session: VoiceSession, pcm: np.ndarray, silence_ms: int = 900) -> None:
        audio = np.concatenate([np.zeros(RATE // 5), pcm, np.zeros(RATE * silence_ms // 1000)]).astype("<i2").tobytes()
        for i in range(0, len(audio), FRAME):
            await session.feed(audio[i : i + FRAME])
            await asyncio.sleep(0)
        await until(lambda: not session._turn_tasks, "the transcription (a worker thread) to finish")

    def test_confirmed_interrupts_once_speech_passes_the_threshold(self):
        words = speech("Sorry to interrupt, could you repeat the hours for Monday?", RATE)

        async def script(session):
            await self.agent_speaks(session)
            await self.caller_says(session, words)

        session, transport, turns, _ = self.run_call("confirmed", ["Sorry to interrupt, could you repeat Monday?"], script)
        at, _ = transport.first("barge_in")
        onset_ms = 200  # the speech starts after 200 ms of silence
        self.assertGreaterEqual(at - onset_ms, 300)  # not before the caller spoke 300 ms
        self.assertLess(at - onset_ms, 300 + 200)  # and within 200 ms of that
        self.assertEqual(transport.stopped, 1)
        stop_at, stop = transport.first("playback_stop")
        self.assertEqual((stop["reason"], stop_at), ("barge_in", at))
        self.assertIn("on_barge_in", [t for t, _ in turns.fired])
        self.assertIn("on_tts_cancelled", [t for t, _ in turns.fired])
        # What interrupted is the caller's next turn.
        self.assertEqual(turns.stored, ["Sorry to interrupt, could you repeat Monday?"])
        # The agent's memory keeps what the caller heard of its reply: the start of it, not all of it.
        [(event_id, heard)] = turns.heard
        self.assertEqual(event_id, "r1")
        self.assertTrue(LONG_REPLY.startswith(heard.rstrip(".")), heard)
        self.assertLess(len(heard), len(LONG_REPLY) // 2)

    def test_confirmed_takes_short_speech_during_playback_as_echo(self):
        cough = speech("Hm.", RATE)[: RATE // 5]  # 200 ms of voice: under the 300 ms threshold

        async def script(session):
            await self.agent_speaks(session)
            await self.caller_says(session, cough)

        session, transport, turns, stt = self.run_call("confirmed", ["hm"], script, min_speech_ms=60)
        self.assertNotIn("barge_in", transport.kinds())
        self.assertEqual(turns.stored, [])

    def test_a_reply_that_starts_within_the_hangover_is_not_interrupted_by_the_turn_it_answers(self):
        question = speech("Can you check the status of my order please?", RATE)
        more = speech("And the delivery address too.", RATE)

        async def feed(session, pcm: np.ndarray) -> None:
            audio = pcm.astype("<i2").tobytes()
            for i in range(0, len(audio), FRAME):
                await session.feed(audio[i : i + FRAME])
                await asyncio.sleep(0)

        async def script(session):
            # The question, then the probable end's 200 ms of silence and a little more: the early
            # transcript takes the turn while the VAD's 600 ms hangover still holds it open.
            await feed(session, np.concatenate([np.zeros(RATE // 5), question, np.zeros(RATE * 420 // 1000)]))
            await until(lambda: session.turns.stored, "the early transcript to take the turn")
            await self.agent_speaks(session)  # the reply starts before the utterance has ended
            await feed(session, np.zeros(RATE))  # the rest of the hangover, and more
            assert session._speaking, "the caller's own question interrupted its answer"
            assert "barge_in" not in session.transport.kinds()
            # Speech after the turn was taken does interrupt, once it lasts the threshold.
            await feed(session, np.concatenate([more, np.zeros(RATE)]))

        _, transport, turns, _ = self.run_call(
            "confirmed", ["Can you check the status of my order please?", "And the delivery address too."], script
        )
        self.assertEqual(transport.kinds().count("barge_in"), 1, transport.controls)
        self.assertEqual(turns.stored, ["Can you check the status of my order please?", "And the delivery address too."])

    def test_a_caller_who_goes_on_after_the_turn_was_taken_interrupts_its_reply(self):
        question = speech("I would like to talk to a specialist", RATE)
        more = speech("about my broken heating system", RATE)

        async def script(session):
            audio = np.concatenate([np.zeros(RATE // 5), question, np.zeros(RATE * 420 // 1000)]).astype("<i2").tobytes()
            for i in range(0, len(audio), FRAME):
                await session.feed(audio[i : i + FRAME])
            await until(lambda: session.turns.stored, "the early transcript to take the turn")
            await self.agent_speaks(session)
            # Voiced again inside the hangover: a continuation, which counts from where it resumed.
            await self.caller_says(session, more)

        _, transport, turns, _ = self.run_call(
            "confirmed", ["I would like to talk to a specialist", "about my broken heating system"], script
        )
        self.assertEqual(transport.kinds().count("barge_in"), 1)
        self.assertEqual(turns.stored, ["I would like to talk to a specialist", "about my broken heating system"])

    def test_immediate_interrupts_at_the_start_of_speech(self):
        words = speech("Wait, wait.", RATE)

        async def script(session):
            await self.agent_speaks(session)
            await self.caller_says(session, words)

        _, transport, turns, _ = self.run_call("immediate", ["Wait, wait."], script)
        at, _ = transport.first("barge_in")
        self.assertLess(at - 200, 300)  # as soon as the VAD confirms speech (its 200 ms minimum)
        self.assertEqual(turns.stored, ["Wait, wait."])

    def test_semantic_lets_a_backchannel_pass_and_interrupts_for_words(self):
        ok = speech("Uh-huh.", RATE)
        words = speech("Actually I need the hours for Sunday.", RATE)

        async def script(session):
            await self.agent_speaks(session)
            await self.caller_says(session, ok)
            assert session._speaking, "a backchannel stopped the agent"
            await self.caller_says(session, words)

        _, transport, turns, _ = self.run_call("semantic", ["Uh-huh.", "Actually I need the hours for Sunday."], script)
        self.assertEqual([f["type"] for _, f in transport.controls].count("barge_in"), 1)
        self.assertIn(("on_backchannel", {"text": "Uh-huh."}), turns.fired)
        self.assertEqual(turns.stored, ["Actually I need the hours for Sunday."])

    def test_disabled_keeps_the_callers_turn_until_the_playback_ends(self):
        words = speech("Can I also ask about parking?", RATE)

        async def script(session):
            await self.agent_speaks(session)
            await self.caller_says(session, words)
            assert turns_so_far(session) == [], "the turn was taken during the playback"
            while not session._say.empty() or session.saying:  # every piece of the reply sent
                await asyncio.sleep(0.01)
            session.playback_drained()  # the caller's side played everything
            await until(lambda: turns_so_far(session), "the kept turn to be taken")

        def turns_so_far(session):
            return session.turns.stored

        _, transport, turns, _ = self.run_call("disabled", ["Can I also ask about parking?"], script)
        self.assertNotIn("barge_in", transport.kinds())
        self.assertEqual(turns.stored, ["Can I also ask about parking?"])
        stop_at, stop = transport.first("playback_stop")
        self.assertEqual(stop["reason"], "done")

    def test_an_incomplete_turn_waits_for_the_rest(self):
        first = speech("My order number is", RATE)
        rest = speech("four five six seven.", RATE)

        async def script(session):
            await self.caller_says(session, first, silence_ms=700)
            assert session.turns.stored == [], "an incomplete turn was taken at once"
            await self.caller_says(session, rest)

        _, transport, turns, _ = self.run_call(
            "confirmed", ["My order number is", "four five six seven."], script, incomplete_turn_wait_ms=5000
        )
        self.assertEqual(turns.stored, ["My order number is four five six seven."])
        self.assertIn("on_turn_incomplete", [t for t, _ in turns.fired])

    def test_level_and_silence_hooks_report_what_they_measure(self):
        words = speech("Good morning, I need some help with my account.", RATE)

        async def script(session):
            session._wants = lambda trigger: True  # as if a hook listened for every trigger
            await self.caller_says(session, words)
            await self.agent_speaks(session)
            await until(lambda: len(fired(session, "on_output_audio_level")) >= 10, "levels of the reply")

        def fired(session, trigger):
            return [p for t, p in session.turns.fired if t == trigger]

        session, _, turns, _ = self.run_call("confirmed", ["Good morning, I need some help with my account."], script)
        heard_ms = 200 + len(words) * 1000 // RATE + 900  # caller_says: leading silence, the words, trailing silence
        inputs = fired(session, "on_input_audio_level")
        self.assertEqual(len(inputs), heard_ms // 100)
        self.assertEqual(inputs[0], {"rms_dbfs": -120.0, "peak_dbfs": -120.0})  # the leading silence
        self.assertGreater(max(p["rms_dbfs"] for p in inputs), -40)
        vad = fired(session, "on_vad_audio_level")
        self.assertEqual(len(vad), heard_ms // 100)
        self.assertTrue(any(p["speaking"] for p in vad) and not vad[0]["speaking"])
        [silence] = fired(session, "on_vad_silence")[-1:]
        wait = session.settings.probable_end_ms
        self.assertGreaterEqual(silence["silence_ms"], wait)  # the probable end's silence
        self.assertLess(silence["silence_ms"], wait + 100)
        outputs = fired(session, "on_output_audio_level")
        self.assertGreater(max(p["rms_dbfs"] for p in outputs), -40)
        self.assertTrue(all(p["peak_dbfs"] >= p["rms_dbfs"] for p in outputs))

    def test_each_agent_speaks_in_its_voice_and_one_that_cannot_be_had_in_the_channels(self):
        async def script(session):
            session.turns.voices.update({"bob": "espeak:en-gb", "eve": "espeak:xx-nowhere"})
            for agent in ("ann", "bob", "eve"):
                await session.room_frame(
                    {"type": "event", "event": {"id": f"r-{agent}", "type": "message", "source": {"channel_id": agent},
                                                "content": {"type": "text", "body": f"This is {agent}."}}}
                )  # fmt: skip
            await until(lambda: len(session._voices) == 3 and session._say.empty() and not session.saying, "all three spoken")

        with self.assertLogs("voice.session", "WARNING") as logs:
            session, transport, _, _ = self.run_call("confirmed", [], script)
        self.assertIn("agent eve speaks in the channel's voice", logs.output[0])
        self.assertIs(session._voices["ann"], session.tts)
        self.assertEqual((session._voices["bob"].name, session._voices["bob"].voice), ("espeak", "en-gb"))
        self.assertIs(session._voices["eve"], session.tts)  # no such voice: still heard
        self.assertGreater(len(transport.audio), 0)

    def test_partial_transcripts_come_while_the_caller_speaks_and_never_after_the_final(self):
        said = "I would like to book a table for four people tomorrow evening at eight o'clock please."
        words = speech(said, RATE)
        self.assertGreater(len(words), RATE * 3)

        async def script(session):
            # At the speed of speech a partial is done long before the next is due: here each is
            # waited for before the next frame (the frames come faster than real time).
            audio = np.concatenate([np.zeros(RATE // 5), words, np.zeros(RATE)]).astype("<i2").tobytes()
            for i in range(0, len(audio), FRAME):
                await session.feed(audio[i : i + FRAME])
                await until(lambda: session._partial is None, "the partial transcript")
            await until(lambda: not session._turn_tasks, "the final transcript")

        _, transport, turns, stt = self.run_call("confirmed", [said], script)
        kinds = transport.kinds()
        partials = [f["text"] for _, f in transport.controls if f["type"] == "partial_transcript"]
        self.assertGreaterEqual(len(partials), 3)  # one per second of speech
        self.assertLess(max(i for i, k in enumerate(kinds) if k == "partial_transcript"), kinds.index("transcript"))
        self.assertEqual([p["text"] for t, p in turns.fired if t == "on_partial_transcription"], partials)
        self.assertEqual(turns.stored, [said])
        # Each partial heard more of the utterance than the one before.
        self.assertEqual(stt.heard_ms[: len(partials)], sorted(stt.heard_ms[: len(partials)]))

    def test_no_partials_while_the_agent_speaks_or_when_turned_off(self):
        words = speech("I would like to book a table for four people tomorrow evening at eight please.", RATE)

        async def script(session):
            await self.caller_says(session, words)

        _, transport, _, _ = self.run_call("confirmed", ["x"], script, partial_interval_ms=0)
        self.assertNotIn("partial_transcript", transport.kinds())

        async def over_the_agent(session):
            await self.agent_speaks(session)
            await self.caller_says(session, words)

        _, transport, _, _ = self.run_call("disabled", ["x"], over_the_agent)
        self.assertNotIn("partial_transcript", transport.kinds())

    def test_keypad_digits_heard_in_the_audio_fire_on_dtmf_and_reach_the_agent(self):
        from tests.voice.test_dtmf import key_tone

        keys = np.concatenate([np.concatenate([key_tone(k, 80, RATE), np.zeros(RATE * 80 // 1000)]) for k in "4071#"])

        async def script(session):
            audio = np.concatenate([np.zeros(RATE // 5), keys, np.zeros(RATE // 5)]).astype("<i2").tobytes()
            for i in range(0, len(audio), FRAME):
                await session.feed(audio[i : i + FRAME])
            await until(lambda: session.turns.stored, "the keypad turn")

        _, transport, turns, _ = self.run_call("confirmed", [], script)
        self.assertEqual([f["digit"] for _, f in transport.controls if f["type"] == "dtmf"], list("4071#"))
        self.assertEqual([p["digit"] for t, p in turns.fired if t == "on_dtmf"], list("4071#"))
        self.assertEqual(turns.stored, ["Keypad: 4071"])


STREAMED = ["Hello there. ", "Your order ships ", "tomorrow. Anything else?"]


@tag("no_db")
class StreamedReplyTests(unittest.TestCase):
    """A streamed reply is said once, sentence by sentence, in whichever order its stored event and its end arrive.

    The room publishes a generation's stored reply as soon as it commits and
    the stream's end after it, so a call usually gets the whole reply as an
    event while the stream's last sentence is still to come; a socket may also
    get them the other way round. Either way the reply is shown and spoken once.
    """

    def run_frames(self, frames: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Hand ``frames`` to a session as the room would; (agent_text texts shown, texts spoken).

        ``self.replies`` gets the reply each agent_text frame names, in order.
        """
        ref: list = []
        transport = RecordingTransport(ref)
        party = CallParty(channel_id="voice", room_id="room", participant_id="caller", sender="caller")
        tts = tts_from_config({"provider": "espeak"})
        spoken: list[str] = []

        class RecordingTTS:
            def __getattr__(self, name: str) -> Any:
                return getattr(tts, name)

            def synthesize(self, text: str):
                spoken.append(text)
                return tts.synthesize(text)

        async def run() -> None:
            session = VoiceSession(
                transport, party, VoiceSettings(), stt=ScriptedSTT([]), tts=RecordingTTS(), turns=RecordedTurns(party)
            )
            ref.append(session)
            await session.start()
            for frame in frames:
                await session.room_frame(frame)
            await until(lambda: transport.first("playback_stop") is not None, "the reply to be said")
            await session.close()

        asyncio.run(run())
        shown = [f for _, f in transport.controls if f["type"] == "agent_text"]
        self.replies = [f["reply"] for f in shown]
        return [f["text"] for f in shown], spoken

    @staticmethod
    def reply_event(body: str = "".join(STREAMED), agent: str = "triage", event_id: str = "e1") -> dict[str, Any]:
        source = {"participant_id": f"p-{agent}", "channel_id": agent}
        return {
            "type": "event",
            "event": {"id": event_id, "type": "message", "source": source, "content": {"type": "text", "body": body}},
        }

    def stream(self, *, event_before_end: bool) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = [{"type": "stream_start", "stream_id": "g1", "agent_id": "triage"}]
        frames += [{"type": "stream_chunk", "stream_id": "g1", "delta": d} for d in STREAMED]
        end = {"type": "stream_end", "stream_id": "g1", "event_id": "e1"}
        return frames + ([self.reply_event(), end] if event_before_end else [end, self.reply_event()])

    def test_the_stored_reply_arriving_before_the_stream_ends_is_not_said_again(self):
        shown, spoken = self.run_frames(self.stream(event_before_end=True))
        self.assertEqual(shown, ["Hello there.", "Your order ships tomorrow.", "Anything else?"])
        self.assertEqual(spoken, shown)

    def test_the_stored_reply_arriving_after_the_stream_ended_is_not_said_again(self):
        shown, spoken = self.run_frames(self.stream(event_before_end=False))
        self.assertEqual(shown, ["Hello there.", "Your order ships tomorrow.", "Anything else?"])
        self.assertEqual(spoken, shown)

    def test_another_message_while_a_reply_streams_is_said(self):
        frames = self.stream(event_before_end=True)
        frames.insert(2, self.reply_event("An operator joined.", agent="ops", event_id="e0"))
        shown, spoken = self.run_frames(frames)
        self.assertIn("An operator joined.", shown)
        self.assertEqual(spoken.count("An operator joined."), 1)
        # Each frame names its reply: the page keeps one bubble per reply, whatever comes between.
        self.assertEqual(self.replies, ["stream:g1", "e0", "stream:g1", "stream:g1"])
        self.assertEqual(spoken.count("Anything else?"), 1)
