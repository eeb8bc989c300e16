"""The streaming resampler: levels, frequencies, aliasing, what it holds back, per-call state."""

from __future__ import annotations

import unittest

import numpy as np
import soxr
from django.test import tag

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


@tag("no_db")
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

    def test_streaming_gives_what_resampling_the_whole_call_gives(self):
        rng = np.random.default_rng(0)
        for src, dst in self.PAIRS + [(44100, 16000)]:
            with self.subTest(f"{src}->{dst}"):
                x = np.clip(rng.normal(0, 4000, src * 2), -32768, 32767).astype(np.int16)
                whole = np.rint(soxr.resample(x.astype(np.float32), src, dst, quality="HQ"))
                for frame_ms in (20, 7):
                    r = Resampler(src, dst)
                    y = np.concatenate([r.process(f).samples for f in frames(x, src, frame_ms)] + [r.flush().samples])
                    self.assertEqual(len(y), len(whole))
                    self.assertLessEqual(np.abs(y - whole).max(), 1)

    def test_it_holds_back_a_fixed_lookahead_and_releases_a_frame_per_frame(self):
        for src, dst in self.PAIRS:
            with self.subTest(f"{src}->{dst}"):
                r = Resampler(src, dst)
                sizes, held = [], []
                for frame in frames(np.zeros(src, dtype=np.int16), src):
                    sizes.append(r.process(frame).num_samples)
                    held.append(r.held_back_ms)
                self.assertEqual(set(sizes[1:]), {dst // 50})  # 20 ms out for every 20 ms in
                self.assertEqual(max(held), 10.0)
                self.assertEqual(r.flush().num_samples, dst // 100)  # the last 10 ms

    def test_soxr_streaming_mode_is_cheaper_but_holds_back_in_bursts(self):
        x = tone((1000.0,), 2000, 8000, -12.0)
        r = Resampler(8000, 16000, low_latency=False)
        sizes, held = [], []
        for frame in frames(x, 8000):
            sizes.append(r.process(frame).num_samples)
            held.append(r.held_back_ms)
        y = r.flush().samples
        self.assertIn(0, sizes)  # frames in, nothing out…
        self.assertGreater(max(sizes), 320 * 4)  # …then 100 ms at once
        self.assertGreater(np.mean(held[10:]), 40)
        self.assertLess(np.max(held[10:]), 120)
        self.assertEqual(sum(sizes) + len(y), 32000)

    def test_same_rate_passes_frames_through(self):
        frame = AudioFrame(tone((440.0,), 20, 16000, -20.0).tobytes(), 16000)
        self.assertIs(Resampler(16000, 16000).process(frame), frame)

    def test_wrong_input_rate_is_an_error(self):
        with self.assertRaises(ValueError):
            Resampler(8000, 16000).process(AudioFrame(bytes(640), 16000))
