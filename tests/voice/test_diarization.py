"""Who is speaking on a call: voice prints matched utterance by utterance, and ON_SPEAKER_CHANGE.

The speaker encoder (Resemblyzer on PyTorch) is an optional install; the tests
that need it are skipped without it (``make diarization`` installs it). The
matching itself is tested on made-up voice prints either way.
"""

from __future__ import annotations

import unittest

import numpy as np
from django.test import SimpleTestCase, tag

from tests.voice.audio_samples import speech
from voice.audio.diarization import SpeakerDiarizer, diarization_available

RATE = 16000
NO_ENCODER = "Resemblyzer and PyTorch are not installed (make diarization installs them)"


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


@tag("no_db")
class MatchingTests(SimpleTestCase):
    def test_close_prints_are_one_speaker_and_a_far_one_is_another(self) -> None:
        diarizer = SpeakerDiarizer(threshold=0.8)
        first = diarizer.assign(unit(1, 0.1, 0))
        again = diarizer.assign(unit(1, 0.2, 0.05))
        other = diarizer.assign(unit(0, 1, 0.2))
        back = diarizer.assign(unit(0.95, 0.15, 0))
        self.assertEqual([t.speaker for t in (first, again, other, back)], ["speaker_1", "speaker_1", "speaker_2", "speaker_1"])
        self.assertEqual([t.new for t in (first, again, other, back)], [True, False, True, False])
        self.assertGreater(again.similarity, 0.8)
        self.assertEqual(diarizer.current, "speaker_1")
        self.assertEqual(diarizer.speakers[0].utterances, 3)  # its print is the mean of three

    def test_an_utterance_too_short_to_tell_keeps_the_speaker(self) -> None:
        self.assertIsNone(SpeakerDiarizer().identify(bytes(RATE), RATE))  # half a second


@tag("no_db")
@unittest.skipUnless(diarization_available(), NO_ENCODER)
class VoicePrintTests(SimpleTestCase):
    def test_two_voices_on_a_call_are_two_speakers(self) -> None:
        diarizer = SpeakerDiarizer()
        said = [
            ("I would like to check the status of my order please.", "en-us"),
            ("Can you tell me when the shop opens tomorrow morning?", "en-us"),
            ("Hello, I am his wife, can I add something to the order?", "en+f3"),
            ("Thank you, that is all for today.", "en-us"),
        ]
        turns = [diarizer.identify(speech(text, RATE, voice=voice).astype("<i2").tobytes(), RATE) for text, voice in said]
        self.assertEqual([t.speaker for t in turns], ["speaker_1", "speaker_1", "speaker_2", "speaker_1"], turns)

    def test_a_speaker_change_fires_its_hook_and_marks_the_turn(self) -> None:
        from tests.voice.test_turn_taking import TurnTakingTests

        async def script(session):
            await TurnTakingTests.caller_says(session, speech("I would like to check the status of my order please.", RATE))
            await TurnTakingTests.caller_says(
                session, speech("Hello, I am his wife, can I add something to the order?", RATE, voice="en+f3")
            )

        case = TurnTakingTests()
        _, _, turns, _ = case.run_call(
            "confirmed", ["Check my order.", "Can I add something?"], script, diarization=True, incomplete_turn_wait_ms=0
        )
        changes = [p for t, p in turns.fired if t == "on_speaker_change"]
        self.assertEqual([(p["previous"], p["speaker"], p["new_speaker"]) for p in changes], [("speaker_1", "speaker_2", True)])
        self.assertEqual([m["voice"]["speaker"] for m in turns.metadata], ["speaker_1", "speaker_2"])
