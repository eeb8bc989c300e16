"""The streaming resampler: levels, frequencies, aliasing, what it holds back, per-call state."""

from __future__ import annotations

import unittest

import numpy as np

from tests.voice.audio_samples import frames, rms_dbfs, tone
from voice.audio import AudioFrame, Resampler


def stream(resampler: Resampler, x: np.ndarray, rate: int, *, flush: bool = True) -> np.ndarray:
    out = [resampler.process(f).samples for f in frames(x, rate)]
    if flush:
        out.append(resampler.flush().samples)
    return np.concatenate(out)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


class ResamplerTests(unittest.TestCase):
    PAIRS = [(8000, 16000), (16000, 8000), (16000, 24000), (24000, 16000), (16000, 48000), (48000, 16000), (24000, 8000)]

    def test_every_pair_keeps_length_level_and_pitch(self):
        for src, dst in self.PAIRS:
            with self.subTest(f"{src}->{dst}"):
                x = tone((1000.0,), 1000, src, -12.0)
                y = stream(Resampler(src, dst), x, src)
                self.assertLessEqual(abs(len(y) - dst), 2)
                middle = y[dst // 4 : 3 * dst // 4]
                self.assertAlmostEqual(rms_dbfs(middle), -12.0, delta=0.1)
                self.assertAlmostEqual(peak_hz(middle, dst), 1000.0, delta=dst / len(middle) * 2)

    def test_phone_band_is_flat_on_the_way_down_to_8k(self):
        # 3.4 kHz is the top of the telephone band: LQ would take 8 dB off it.
        y = stream(Resampler(16000, 8000), tone((3400.0,), 1000, 16000, -12.0), 16000)
        self.assertAlmostEqual(rms_dbfs(y[2000:6000]), -12.0, delta=0.2)

    def test_no_alias_from_above_the_new_nyquist(self):
        # A 6 kHz tone has no place at 8 kHz: without a filter it folds to 2 kHz at full level (QQ does that).
        y = stream(Resampler(16000, 8000), tone((6000.0,), 1000, 16000, -6.0), 16000)
        self.assertLess(rms_dbfs(y[2000:6000]), -90)
        aliased = stream(Resampler(16000, 8000, quality="QQ"), tone((6000.0,), 1000, 16000, -6.0), 16000)
        self.assertGreater(rms_dbfs(aliased[2000:6000]), -10)

    def test_what_it_holds_back_is_what_the_module_documents(self):
        for (src, dst), mean_limit, max_limit in (((8000, 16000), 70, 120), ((24000, 16000), 25, 40), ((48000, 16000), 25, 40)):
            with self.subTest(f"{src}->{dst}"):
                r = Resampler(src, dst)
                held = []
                for i, frame in enumerate(frames(np.zeros(src * 4, dtype=np.int16), src)):
                    r.process(frame)
                    if i >= 10:
                        held.append(r.held_back_ms)
                self.assertLess(np.mean(held), mean_limit)
                self.assertLess(np.max(held), max_limit)

    def test_state_is_per_instance_and_reset_forgets(self):
        x = tone((440.0,), 500, 8000, -20.0)
        a, b = Resampler(8000, 16000), Resampler(8000, 16000)
        ya = stream(a, x, 8000)
        b.process(AudioFrame(tone((3000.0,), 300, 8000, -6.0).tobytes(), 8000))  # other audio in b
        b.reset()
        yb = stream(b, x, 8000)
        # Equal but for libsoxr's dither on int16 output (a least significant bit or two).
        np.testing.assert_allclose(ya, yb, atol=3)
        self.assertEqual(len(ya), len(yb))

    def test_same_rate_passes_frames_through(self):
        frame = AudioFrame(tone((440.0,), 20, 16000, -20.0).tobytes(), 16000)
        self.assertIs(Resampler(16000, 16000).process(frame), frame)

    def test_wrong_input_rate_is_an_error(self):
        with self.assertRaises(ValueError):
            Resampler(8000, 16000).process(AudioFrame(bytes(640), 16000))
