"""The VAD stage on real speech (espeak-ng) with each detector, and its timing rules on numpy signals."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from tests.voice.audio_samples import frames, silence, speech, tone, white_noise
from voice.audio import (
    AudioLevel,
    EnergySpeechDetector,
    SileroSpeechDetector,
    SpeechEnd,
    SpeechProbableEnd,
    SpeechResumed,
    SpeechStart,
    VADConfig,
    VoiceActivityDetector,
    WebRtcSpeechDetector,
)

RATE = 16000


def run(vad: VoiceActivityDetector, x: np.ndarray, frame_ms: float = 20) -> list:
    events = []
    for frame in frames(x, RATE, frame_ms):
        self_frame = vad.process(frame)
        assert self_frame is frame  # audio passes through untouched
        events += vad.drain_events()
    return events


def speech_events(events: list) -> list:
    return [e for e in events if not isinstance(e, AudioLevel)]


DETECTORS = {
    "webrtc": lambda: WebRtcSpeechDetector(RATE),
    "silero": lambda: SileroSpeechDetector(RATE),
    "energy": lambda: EnergySpeechDetector(RATE),
}


@tag("no_db")
class SpeechSegmentationTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.first = speech("Hello there.")
        cls.second = speech("How are you doing today?")

    def test_two_utterances_with_each_detector(self):
        lead, gap = 500, 1000
        x = np.concatenate([silence(lead), self.first, silence(gap), self.second, silence(1000)])
        starts = [lead, lead + len(self.first) / 16 + gap]
        ends = [lead + len(self.first) / 16, starts[1] + len(self.second) / 16]
        config = VADConfig(pre_roll_ms=300, probable_end_ms=200, end_silence_ms=600)
        for name, make in DETECTORS.items():
            with self.subTest(name):
                events = speech_events(run(VoiceActivityDetector(make(), config), x))
                kinds = [e.kind for e in events]
                self.assertEqual(kinds, ["speech_start", "speech_probable_end", "speech_end"] * 2)
                for i in range(2):
                    start, probable, end = events[3 * i : 3 * i + 3]
                    self.assertAlmostEqual(start.at_ms, starts[i], delta=120)
                    # The detector's idea of the last voiced sample: late by its own hangover, never early.
                    self.assertGreaterEqual(probable.last_voiced_ms, ends[i] - 60)
                    self.assertLessEqual(probable.last_voiced_ms, ends[i] + 150)
                    self.assertAlmostEqual(probable.at_ms - probable.last_voiced_ms, 200, delta=40)
                    # The hangover runs on after the probable end: that is the time the consumer gains.
                    self.assertAlmostEqual(end.at_ms - probable.at_ms, 400, delta=40)
                    self.assertEqual(end.pcm, probable.pcm)
                    self.assertFalse(end.forced)
                    # Pre-roll + speech + the silence up to the probable end.
                    spoken = (ends[i] - starts[i]) / 1000
                    self.assertGreater(end.duration_ms / 1000, spoken)
                    self.assertLess(end.duration_ms / 1000, spoken + 0.3 + 0.2 + 0.3)

    def test_the_utterance_holds_the_speech_and_the_pre_roll(self):
        x = np.concatenate([silence(500), self.first, silence(1000)])
        events = speech_events(run(VoiceActivityDetector(SileroSpeechDetector(RATE), VADConfig(pre_roll_ms=300)), x))
        end = events[-1]
        utterance = np.frombuffer(end.pcm, dtype="<i2")
        # The speech appears whole in the utterance, after some quiet pre-roll.
        offset = int(np.argmax(np.correlate(utterance.astype(float), self.first[:1600].astype(float), mode="valid")))
        np.testing.assert_array_equal(utterance[offset : offset + len(self.first)], self.first)
        self.assertGreaterEqual(offset, RATE * 0.05)
        self.assertLessEqual(offset, RATE * 0.3)

    def test_speech_resumed_after_a_probable_end_makes_one_utterance(self):
        x = np.concatenate([silence(300), self.first, silence(400), self.second, silence(1000)])
        config = VADConfig(probable_end_ms=150, end_silence_ms=700)
        events = speech_events(run(VoiceActivityDetector(SileroSpeechDetector(RATE), config), x))
        self.assertEqual(
            [e.kind for e in events],
            ["speech_start", "speech_probable_end", "speech_resumed", "speech_probable_end", "speech_end"],
        )
        self.assertIsInstance(events[2], SpeechResumed)
        self.assertGreater(events[-1].duration_ms, (len(self.first) + len(self.second)) / 16 + 400)
        self.assertEqual(events[-1].pcm, events[3].pcm)

    def test_noise_alone_is_not_speech(self):
        noise = white_noise(3000, RATE, -40.0)
        for name in ("webrtc", "silero"):
            with self.subTest(name):
                self.assertEqual(speech_events(run(VoiceActivityDetector(DETECTORS[name]()), noise)), [])

    def test_frame_size_does_not_change_the_result(self):
        x = np.concatenate([silence(300), self.first, silence(900)])
        by_size = []
        for frame_ms in (20, 7, 64):
            events = speech_events(run(VoiceActivityDetector(WebRtcSpeechDetector(RATE)), x, frame_ms))
            by_size.append([(e.kind, e.at_ms) for e in events])
        self.assertEqual(by_size[0], by_size[1])
        self.assertEqual(by_size[0], by_size[2])


@tag("no_db")
class TimingRuleTests(unittest.TestCase):
    """Energy detector on tones: the rules alone, with exact times."""

    def vad(self, **config) -> VoiceActivityDetector:
        return VoiceActivityDetector(EnergySpeechDetector(RATE, threshold_dbfs=-40), VADConfig(**config))

    def test_shorter_than_min_speech_is_ignored(self):
        x = np.concatenate([silence(200), tone((300.0,), 120, RATE, -20), silence(800)])
        self.assertEqual(speech_events(run(self.vad(min_speech_ms=200), x)), [])
        x = np.concatenate([silence(200), tone((300.0,), 240, RATE, -20), silence(800)])
        events = speech_events(run(self.vad(min_speech_ms=200), x))
        self.assertEqual([e.kind for e in events], ["speech_start", "speech_probable_end", "speech_end"])
        self.assertEqual(events[0].at_ms, 200)
        self.assertEqual(events[1].last_voiced_ms, 440)

    def test_exact_times_and_pre_roll(self):
        x = np.concatenate([silence(1000), tone((300.0,), 500, RATE, -20), silence(1000)])
        events = speech_events(run(self.vad(pre_roll_ms=300, probable_end_ms=200, end_silence_ms=600), x))
        start, probable, end = events
        self.assertEqual((start.at_ms, probable.at_ms, end.at_ms), (1000, 1700, 2100))
        self.assertEqual(end.last_voiced_ms, 1500)
        self.assertEqual(len(end.pcm), (300 + 500 + 200) * 32)

    def test_long_speech_is_cut_at_max_utterance(self):
        x = np.concatenate([tone((300.0,), 2500, RATE, -20), silence(1000)])
        events = speech_events(run(self.vad(max_utterance_ms=1000, pre_roll_ms=0), x))
        forced = [e for e in events if isinstance(e, SpeechEnd) and e.forced]
        self.assertEqual(len(forced), 2)
        self.assertEqual(forced[0].duration_ms, 1000)
        self.assertEqual(sum(isinstance(e, SpeechStart) for e in events), 3)
        # The third reaches the cap in its hangover: it ends there, with its probable end's bytes.
        self.assertEqual(events[-1].at_ms, 3000)
        self.assertFalse(events[-1].forced)
        self.assertEqual(events[-1].pcm, events[-2].pcm)

    def test_audio_level_is_reported_every_interval(self):
        x = np.concatenate([tone((440.0,), 1000, RATE, -20), silence(500)])
        levels = [e for e in run(self.vad(level_interval_ms=100), x) if isinstance(e, AudioLevel)]
        self.assertEqual(len(levels), 15)
        self.assertEqual([e.at_ms for e in levels[:3]], [100, 200, 300])
        self.assertAlmostEqual(levels[5].rms_dbfs, -20, delta=0.1)
        self.assertAlmostEqual(levels[5].peak_dbfs, -17, delta=0.1)  # a sine's peak is 3 dB over its RMS
        self.assertTrue(levels[5].speaking)
        self.assertEqual(levels[-1].rms_dbfs, -120)

    def test_speaking_flag_and_reset(self):
        vad = self.vad()
        run(vad, tone((300.0,), 500, RATE, -20))
        self.assertTrue(vad.speaking)
        vad.reset()
        self.assertFalse(vad.speaking)
        self.assertEqual(vad.drain_events(), [])

    def test_probable_end_may_not_exceed_the_end(self):
        with self.assertRaises(ValueError):
            VADConfig(probable_end_ms=700, end_silence_ms=600)

    def test_probable_end_event_types(self):
        x = np.concatenate([tone((300.0,), 400, RATE, -20), silence(700)])
        events = speech_events(run(self.vad(), x))
        self.assertIsInstance(events[1], SpeechProbableEnd)
        self.assertEqual(events[1].sample_rate, RATE)


@tag("no_db")
class DetectorTests(unittest.TestCase):
    def test_each_detector_tells_speech_from_silence_on_one_window(self):
        voiced = speech("Hello there.", RATE)
        for name, make in DETECTORS.items():
            with self.subTest(name):
                detector = make()
                n = detector.window_samples
                middle = len(voiced) // 2 - n * 4
                # Silero carries context from window to window: give it a few windows of the word first.
                probabilities = [
                    detector.speech_probability(voiced[middle + i * n : middle + (i + 1) * n].tobytes()) for i in range(8)
                ]
                self.assertGreater(max(probabilities), 0.5)
                detector.reset()
                self.assertLess(detector.speech_probability(bytes(n * 2)), 0.5)

    def test_unsupported_settings_are_refused(self):
        with self.assertRaises(ValueError):
            WebRtcSpeechDetector(22050)
        with self.assertRaises(ValueError):
            WebRtcSpeechDetector(16000, window_ms=25)
        with self.assertRaises(ValueError):
            SileroSpeechDetector(8000)
        with self.assertRaises(ValueError):
            VoiceActivityDetector(WebRtcSpeechDetector(8000)).process(frames(silence(20), RATE).__next__())
