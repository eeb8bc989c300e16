"""Denoisers on espeak-ng speech in white noise: the noise goes down, the speech stays."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from tests.voice.audio_samples import best_lag, frames, mix, rms_dbfs, silence, speech, white_noise
from voice.audio import AudioFrame, RNNoiseDenoiser, SpeexDenoiser

RATE = 16000


try:
    import pyrnnoise  # noqa: F401

    HAS_RNNOISE = True
except ImportError:  # requirements-dev.txt installs it; `make run` does not
    HAS_RNNOISE = False
NEEDS_RNNOISE = "pyrnnoise is not installed (requirements-dev.txt)"


@tag("no_db")
class DenoiserTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.speech = speech("Hello, I would like to check my account balance please.", RATE, level_dbfs=-22)
        cls.clean = np.concatenate([silence(3000), cls.speech, silence(500)])
        cls.noise = white_noise(len(cls.clean) / 16, RATE, -40.0, seed=3)
        cls.noisy = mix(cls.clean, cls.noise)

    def denoise(self, denoiser, x: np.ndarray, frame_ms: float = 20) -> np.ndarray:
        return np.concatenate([denoiser.process(f).samples for f in frames(x, RATE, frame_ms)])

    def check(self, denoiser, *, min_reduction_db: float, max_speech_change_db: float, min_correlation: float):
        y = self.denoise(denoiser, self.noisy)
        lag = 320  # both add one 20 ms block of delay
        self.assertEqual(best_lag(y, self.clean[: len(y)], 2000), lag)
        settled = slice(2 * RATE, int(2.9 * RATE))  # noise alone, after the estimators have settled
        self.assertGreater(rms_dbfs(self.noisy[settled]) - rms_dbfs(y[settled]), min_reduction_db)
        start = 3 * RATE
        out = y[start + lag : start + lag + len(self.speech)]
        self.assertLess(abs(rms_dbfs(out) - rms_dbfs(self.speech)), max_speech_change_db)
        self.assertGreater(np.corrcoef(out.astype(float), self.speech.astype(float))[0, 1], min_correlation)

    def test_speex(self):
        self.check(SpeexDenoiser(RATE), min_reduction_db=10, max_speech_change_db=1.0, min_correlation=0.99)

    @unittest.skipUnless(HAS_RNNOISE, NEEDS_RNNOISE)
    def test_rnnoise(self):
        self.check(RNNoiseDenoiser(RATE), min_reduction_db=25, max_speech_change_db=1.5, min_correlation=0.98)

    def test_any_frame_size_gives_the_same_audio(self):
        x = self.noisy[: RATE * 2]
        a, b = self.denoise(SpeexDenoiser(RATE), x, 20), self.denoise(SpeexDenoiser(RATE), x, 13)
        n = min(len(a), len(b))
        np.testing.assert_array_equal(a[:n], b[:n])

    @unittest.skipUnless(HAS_RNNOISE, NEEDS_RNNOISE)
    def test_rnnoise_any_frame_size_gives_nearly_the_same_audio(self):
        x = self.noisy[: RATE * 2]
        # RNNoise runs through soxr, which dithers its int16 output, and the network amplifies that a little.
        a, b = self.denoise(RNNoiseDenoiser(RATE), x, 20), self.denoise(RNNoiseDenoiser(RATE), x, 13)
        n = min(len(a), len(b)) - 2000
        self.assertLess(np.abs(a[:n].astype(int) - b[:n]).max(), 32)

    def test_reset_starts_over(self):
        denoiser = SpeexDenoiser(RATE)
        first = self.denoise(denoiser, self.noisy[:RATE])
        self.denoise(denoiser, self.noisy[RATE : 3 * RATE])
        denoiser.reset()
        np.testing.assert_array_equal(self.denoise(denoiser, self.noisy[:RATE]), first)

    def test_wrong_rate_is_an_error(self):
        with self.assertRaises(ValueError):
            SpeexDenoiser(16000).process(AudioFrame(bytes(320), 8000))
