"""AGC: target level, maximum gain, noise floor, attack and release, no clipping, on tones and on speech."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from tests.voice.audio_samples import frames, mix, rms_dbfs, silence, speech, tone, white_noise
from voice.audio import AutomaticGainControl

RATE = 16000


def run(agc: AutomaticGainControl, x: np.ndarray) -> np.ndarray:
    return np.concatenate([agc.process(f).samples for f in frames(x, RATE)])


def settle_ms(y: np.ndarray, target_dbfs: float, within_db: float = 1.0) -> float:
    """Time until every 20 ms frame's level stays within ``within_db`` of the target."""
    levels = [rms_dbfs(y[i : i + 320]) for i in range(0, len(y) - 319, 320)]
    outside = [i for i, level in enumerate(levels) if abs(level - target_dbfs) > within_db]
    return 20.0 * (outside[-1] + 1) if outside else 0.0


@tag("no_db")
class AgcTests(unittest.TestCase):
    def test_quiet_and_loud_tones_reach_the_target(self):
        for level in (-40.0, -30.0, -10.0, -6.0):
            with self.subTest(level=level):
                y = run(AutomaticGainControl(target_dbfs=-20, min_gain_db=-20), tone((440.0,), 4000, RATE, level))
                self.assertAlmostEqual(rms_dbfs(y[-RATE:]), -20.0, delta=0.3)

    def test_cut_is_capped_too(self):
        y = run(AutomaticGainControl(target_dbfs=-20, min_gain_db=-12), tone((440.0,), 2000, RATE, -6.0))
        self.assertAlmostEqual(rms_dbfs(y[-RATE:]), -18.0, delta=0.3)

    def test_gain_is_capped(self):
        y = run(AutomaticGainControl(target_dbfs=-20, max_gain_db=12), tone((440.0,), 4000, RATE, -50.0))
        self.assertAlmostEqual(rms_dbfs(y[-RATE:]), -38.0, delta=0.3)

    def test_below_the_noise_floor_the_gain_is_held(self):
        agc = AutomaticGainControl(noise_floor_dbfs=-55)
        y = run(agc, tone((440.0,), 2000, RATE, -62.0))
        self.assertAlmostEqual(rms_dbfs(y), -62.0, delta=0.2)
        self.assertEqual(agc.gain_db, 0.0)

    def test_pauses_do_not_pump_the_line_noise_up(self):
        text = "Hello, I would like to check my account balance please."
        talk = speech(text, RATE, level_dbfs=-30)
        noise = white_noise(1000 * (3 * len(talk) / RATE + 6), RATE, -50.0, seed=7)
        x = mix(np.concatenate([talk, silence(2000), talk, silence(2000), talk, silence(2000)]), noise)
        agc = AutomaticGainControl(target_dbfs=-20, max_gain_db=24)
        gains = []
        for frame in frames(x, RATE):
            agc.process(frame)
            gains.append(agc.gain_db)
        end_of_talk = (2 * len(talk) + 2000 * 16) // 320  # the second pause starts here
        during_pause = gains[end_of_talk + 10 : end_of_talk + 95]
        self.assertLess(max(during_pause) - gains[end_of_talk], 1.0)
        # Without the noise tracking (a margin of 0 dB), the same pause drives the gain up to its maximum.
        loose = AutomaticGainControl(target_dbfs=-20, max_gain_db=24, speech_margin_db=0)
        gains = []
        for frame in frames(x, RATE):
            loose.process(frame)
            gains.append(loose.gain_db)
        self.assertGreater(max(gains[end_of_talk + 10 : end_of_talk + 95]) - gains[end_of_talk], 6.0)

    def test_attack_is_fast_and_release_slow(self):
        agc = AutomaticGainControl(target_dbfs=-20, attack_ms=20, release_ms=500)
        run(agc, tone((440.0,), 3000, RATE, -35.0))  # gain settles at +15 dB
        loud = run(agc, tone((440.0,), 2000, RATE, -10.0))  # needs -10 dB: gain falls (attack)
        quiet = run(agc, tone((440.0,), 4000, RATE, -35.0))  # needs +15 dB: gain rises (release)
        attack, release = settle_ms(loud, -20), settle_ms(quiet, -20)
        self.assertLess(attack, 150)
        self.assertGreater(release, 1000)
        self.assertLess(release, 3000)

    def test_it_never_clips(self):
        agc = AutomaticGainControl(target_dbfs=-20, max_gain_db=30)
        run(agc, tone((440.0,), 3000, RATE, -45.0))  # gain near +25 dB
        y = run(agc, tone((440.0,), 500, RATE, -3.0))  # then a shout
        self.assertLessEqual(np.abs(y.astype(np.int32)).max(), int(32768 * 10 ** (-1 / 20)) + 1)

    def test_speech_over_a_30_db_range_comes_out_within_a_few_db(self):
        text = "Hello, I would like to check my account balance please. Thank you very much."
        outputs = []
        for level in (-40.0, -25.0, -10.0):
            agc = AutomaticGainControl(target_dbfs=-20)
            x = np.concatenate([speech(text, RATE, level_dbfs=level)] * 2)
            y = run(agc, x)[len(x) // 2 :]  # the second pass, once settled
            active = [rms_dbfs(y[i : i + 320]) for i in range(0, len(y) - 319, 320)]
            active = [a for a in active if a > -60]
            outputs.append(float(np.median(active)))
        self.assertLess(max(outputs) - min(outputs), 5.0, outputs)
        # The fast attack lets the loudest syllables set the gain: the median frame sits a few dB under the target.
        self.assertTrue(all(-28 < o < -18 for o in outputs), outputs)

    def test_changes_are_ramped_without_clicks(self):
        agc = AutomaticGainControl(target_dbfs=-20, attack_ms=5)
        x = np.concatenate([silence(200), tone((200.0,), 400, RATE, -6.0)])
        y = run(agc, x).astype(np.float64)
        # The envelope moves smoothly: no sample-to-sample jump bigger than the tone itself allows.
        max_step = 2 * np.pi * 200 / RATE * 32768 * np.sqrt(2) * 10 ** (-6 / 20)
        self.assertLess(np.abs(np.diff(y)).max(), max_step * 1.05)

    def test_reset(self):
        agc = AutomaticGainControl()
        run(agc, tone((440.0,), 2000, RATE, -40.0))
        self.assertGreater(agc.gain_db, 10)
        agc.reset()
        self.assertEqual(agc.gain_db, 0.0)
