"""DTMF: every key at 8 and 16 kHz in noise, durations, twist, level, and no digits in speech."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from tests.voice.audio_samples import frames, mix, silence, speech, tone, white_noise
from voice.audio import DtmfDetector, DtmfDigit
from voice.audio.dtmf import COLUMN_HZ, KEYS, ROW_HZ

ALL_KEYS = "123A456B789C*0#D"


def key_tone(key: str, ms: float, rate: int, level_dbfs: float = -12.0, *, twist_db: float = 0.0) -> np.ndarray:
    """The key's two tones, each at ``level_dbfs``, the column tone ``twist_db`` louder (negative: quieter)."""
    row = next(i for i, keys in enumerate(KEYS) if key in keys)
    column = KEYS[row].index(key)
    return mix(tone((ROW_HZ[row],), ms, rate, level_dbfs), tone((COLUMN_HZ[column],), ms, rate, level_dbfs + twist_db))


def detect(x: np.ndarray, rate: int, frame_ms: float = 20, **options) -> list[DtmfDigit]:
    detector = DtmfDetector(rate, **options)
    events = []
    for frame in frames(x, rate, frame_ms):
        detector.process(frame)
        events += detector.drain_events()
    return events


def sequence(keys: str, rate: int, tone_ms: float = 60, pause_ms: float = 60, **kwargs) -> np.ndarray:
    parts = [silence(100, rate)]
    for key in keys:
        parts += [key_tone(key, tone_ms, rate, **kwargs), silence(pause_ms, rate)]
    return np.concatenate(parts + [silence(100, rate)])


@tag("no_db")
class DtmfTests(unittest.TestCase):
    def test_all_sixteen_keys_in_noise_at_8_and_16_khz(self):
        for rate in (8000, 16000):
            with self.subTest(rate=rate):
                clean = sequence(ALL_KEYS, rate)
                noisy = mix(clean, white_noise(len(clean) * 1000 / rate, rate, -35.0, seed=rate))  # tones at -12 dBFS each
                events = detect(noisy, rate)
                self.assertEqual("".join(e.digit for e in events), ALL_KEYS)
                # Each digit is placed where its tone began (within a block's hop).
                starts = [100 + i * 120 for i in range(16)]
                for event, start in zip(events, starts, strict=True):
                    self.assertAlmostEqual(event.at_ms, start, delta=13)

    def test_minimum_duration_and_pause(self):
        rate = 8000
        self.assertEqual("".join(e.digit for e in detect(sequence("159", rate, tone_ms=40, pause_ms=40), rate)), "159")
        self.assertEqual(detect(sequence("159", rate, tone_ms=20, pause_ms=60), rate), [])
        # One long press is one digit; the same key twice needs a pause between.
        self.assertEqual([e.digit for e in detect(sequence("5", rate, tone_ms=1500), rate)], ["5"])
        self.assertEqual([e.digit for e in detect(sequence("55", rate, tone_ms=60, pause_ms=50), rate)], ["5", "5"])

    def test_twist_limits(self):
        rate = 8000
        self.assertEqual(len(detect(sequence("8", rate, twist_db=-7.0), rate)), 1)  # normal twist (highs lost): up to 8 dB
        self.assertEqual(detect(sequence("8", rate, twist_db=-10.0), rate), [])
        self.assertEqual(len(detect(sequence("8", rate, twist_db=3.0), rate)), 1)  # reverse twist: up to 4 dB
        self.assertEqual(detect(sequence("8", rate, twist_db=6.0), rate), [])

    def test_level_limit(self):
        rate = 8000
        self.assertEqual(len(detect(sequence("0", rate, level_dbfs=-30.0), rate)), 1)
        self.assertEqual(detect(sequence("0", rate, level_dbfs=-40.0), rate), [])

    def test_a_single_tone_is_not_a_key(self):
        x = np.concatenate([silence(100, 8000), tone((770.0,), 300, 8000, -10), silence(100, 8000)])
        self.assertEqual(detect(x, 8000), [])

    def test_frame_size_does_not_matter(self):
        x = sequence("0123", 16000)
        expected = [(e.digit, e.at_ms) for e in detect(x, 16000)]
        for frame_ms in (7, 30, 100):
            self.assertEqual([(e.digit, e.at_ms) for e in detect(x, 16000, frame_ms)], expected)

    def test_no_digits_in_speech(self):
        text = (
            "Hello, thank you for calling. I would like to check the balance of my account, "
            "the number is nine four one two, and my date of birth is the fourth of July. "
            "Could you also tell me about your opening hours on Saturday and Sunday? Beep, beep, hmm."
        )
        for voice in ("en-us", "en-gb", "fr-fr"):
            for rate in (8000, 16000):
                with self.subTest(voice=voice, rate=rate):
                    x = speech(text, rate, voice=voice, level_dbfs=-16.0)
                    self.assertEqual(detect(x, rate), [])

    def test_speech_would_pass_without_the_energy_and_harmonic_checks(self):
        # The test above can fail: relax the two checks aimed at speech and it does.
        text = "Hello, thank you for calling. I would like to check the balance of my account, the number is nine four one two."
        found = sum(
            len(detect(speech(text, 8000, voice=voice, level_dbfs=-16.0), 8000, min_tone_fraction=0.0, min_harmonic_ratio_db=0.0))
            for voice in ("en-us", "en-gb", "fr-fr")
        )
        self.assertGreater(found, 0)

    def test_unsupported_rate_is_refused(self):
        with self.assertRaises(ValueError):
            DtmfDetector(44100)
