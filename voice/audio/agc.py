"""Automatic gain control: brings speech to a steady level for the VAD and the STT.

How it works, once per frame (numpy, no per-sample Python):

1. the frame's RMS level in dBFS is measured;
2. the gain is held (raising it in pauses would pump the line noise up
   between words, and the VAD would take the noise for speech) when the
   level is under ``noise_floor_dbfs``, or under the line's own noise level
   plus ``speech_margin_db``. The noise level is tracked as a running
   minimum: it drops at once to any quieter frame and rises by at most
   ``noise_rise_db_per_s`` (so a few seconds of speech do not pass for
   noise, while a change of line does after a while);
3. otherwise the wanted gain is ``target_dbfs - level``, clamped to
   ``[min_gain_db, max_gain_db]``;
4. the gain moves toward it with a one-pole smoother: time constant
   ``attack_ms`` when the gain must fall (a sudden loud voice is tamed in
   tens of ms) and ``release_ms`` when it may rise (slowly, so the gain does
   not swell in every pause);
5. a limiter caps the gain so the frame's peak stays under
   ``ceiling_dbfs``: AGC never clips;
6. the gain is ramped linearly across the frame from the previous frame's
   gain, so a change makes no click.
"""

from __future__ import annotations

import math

import numpy as np

from voice.audio.frame import AudioFrame

FULL_SCALE = 32768.0


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS of int16 samples (a full-scale sine is −3 dBFS); silence is −120."""
    if not len(samples):
        return -120.0
    x = samples.astype(np.float32)
    rms = math.sqrt(float(np.dot(x, x)) / len(x))
    return 20.0 * math.log10(rms / FULL_SCALE) if rms > 0 else -120.0


class AutomaticGainControl:
    """An ``AudioStage`` (name ``"agc"``) keeping speech near ``target_dbfs``; see the module docstring."""

    name = "agc"

    def __init__(
        self,
        *,
        target_dbfs: float = -20.0,
        max_gain_db: float = 24.0,
        min_gain_db: float = -12.0,
        attack_ms: float = 20.0,
        release_ms: float = 500.0,
        noise_floor_dbfs: float = -55.0,
        speech_margin_db: float = 10.0,
        noise_rise_db_per_s: float = 1.0,
        ceiling_dbfs: float = -1.0,
    ) -> None:
        if min_gain_db > max_gain_db:
            raise ValueError("min_gain_db must not exceed max_gain_db")
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.min_gain_db = min_gain_db
        self.attack_ms = attack_ms
        self.release_ms = release_ms
        self.noise_floor_dbfs = noise_floor_dbfs
        self.speech_margin_db = speech_margin_db
        self.noise_rise_db_per_s = noise_rise_db_per_s
        self.ceiling = FULL_SCALE * 10 ** (ceiling_dbfs / 20)
        self.reset()

    def process(self, frame: AudioFrame) -> AudioFrame:
        """Hot path (every frame of every call): eight numpy calls on the frame, the rest on Python floats."""
        x = frame.samples
        if not len(x):
            return frame
        xf = x.astype(np.float32)
        energy = float(np.dot(xf, xf))
        level = 10.0 * math.log10(energy / len(x) / FULL_SCALE**2) if energy > 0 else -120.0
        if level < self.noise_dbfs:
            self.noise_dbfs = level
        else:
            self.noise_dbfs = min(level, self.noise_dbfs + self.noise_rise_db_per_s * frame.duration_ms / 1000)
        if level >= self.noise_floor_dbfs and level >= self.noise_dbfs + self.speech_margin_db:
            wanted = min(max(self.target_dbfs - level, self.min_gain_db), self.max_gain_db)
            tau = self.attack_ms if wanted < self.gain_db else self.release_ms
            alpha = 1.0 - math.exp(-frame.duration_ms / tau) if tau > 0 else 1.0
            self.gain_db += (wanted - self.gain_db) * alpha
        gain = 10 ** (self.gain_db / 20)
        peak = max(int(x.max()), -int(x.min()))
        if peak * gain > self.ceiling:
            gain = self.ceiling / peak
            self.gain_db = 20 * math.log10(gain)
        if abs(gain - self._applied) <= 1e-4 * gain:
            xf *= gain
        else:
            xf *= np.linspace(self._applied, gain, len(xf), dtype=np.float32)
        if peak * max(gain, self._applied) > self.ceiling:
            # The ramp starts from the gain the previous frame ended on, which
            # may exceed this frame's cap: clip as the last guard.
            np.clip(xf, -self.ceiling, self.ceiling, out=xf)
        self._applied = gain
        return AudioFrame(np.rint(xf, out=xf).astype("<i2").tobytes(), frame.sample_rate)

    def reset(self) -> None:
        self.gain_db = 0.0
        # The line's noise level, as tracked; until a quiet frame shows it, the fixed floor rules.
        self.noise_dbfs = self.noise_floor_dbfs - self.speech_margin_db
        self._applied = 1.0  # linear gain at the end of the previous frame
