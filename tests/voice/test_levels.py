"""The level meter behind the VAD's level events and the audio-level hooks."""

from __future__ import annotations

import numpy as np
from django.test import SimpleTestCase, tag

from tests.voice.audio_samples import silence, tone
from voice.audio.levels import LevelMeter

RATE = 16000


@tag("no_db")
class LevelMeterTests(SimpleTestCase):
    def test_intervals_follow_the_audio_clock_whatever_the_chunks(self):
        pcm = np.concatenate([tone((440.0,), 1000, RATE, -20), silence(500)]).astype("<i2").tobytes()
        whole = LevelMeter(RATE, 100).feed(pcm)
        meter = LevelMeter(RATE, 100)
        pieces = [level for i in range(0, len(pcm), 1234) for level in meter.feed(pcm[i : i + 1234])]
        self.assertEqual(len(whole), 15)
        # The same readings (summed in another order: equal to float precision).
        rounded = [[(round(v.rms_dbfs, 6), round(v.peak_dbfs, 6)) for v in levels] for levels in (pieces, whole)]
        self.assertEqual(rounded[0], rounded[1])
        self.assertAlmostEqual(whole[3].rms_dbfs, -20, delta=0.1)
        self.assertAlmostEqual(whole[3].peak_dbfs, -17, delta=0.1)  # a sine's peak is 3 dB over its RMS
        self.assertEqual((whole[-1].rms_dbfs, whole[-1].peak_dbfs), (-120.0, -120.0))

    def test_a_partial_interval_waits_for_the_rest(self):
        meter = LevelMeter(8000, 100)
        self.assertEqual(meter.feed(bytes(799 * 2)), [])
        self.assertEqual(len(meter.feed(bytes(2))), 1)

    def test_full_scale_negative_peak(self):
        [level] = LevelMeter(RATE, 10).feed(np.full(160, -32768, dtype="<i2").tobytes())
        self.assertEqual(level.peak_dbfs, 0.0)
