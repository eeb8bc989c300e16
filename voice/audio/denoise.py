"""Noise suppression: SpeexDSP's spectral suppressor (default) or RNNoise.

=============  ======================================  =====================================================
denoiser       cost measured here                      notes
=============  ======================================  =====================================================
Speex          ~36 µs per 20 ms block at 16 kHz        any rate; output lags input by one block (20 ms);
                                                       blocks of ``frame_ms``: nothing held back when the
                                                       transport's frames are 20 ms; ~14 dB off white noise
                                                       once its noise estimate has settled (~2 s)
RNNoise        ~650-930 µs per 10 ms block at 48 kHz   48 kHz only: 16 kHz audio goes up to 48k and back
                                                       (2 × 10 ms held by the resamplers); output lags 20 ms;
                                                       >30 dB off white noise at once, better on babble and
                                                       music; ~20× Speex's CPU
=============  ======================================  =====================================================
"""

from __future__ import annotations

import numpy as np
from speexdsp_ns import NoiseSuppression

from voice.audio.frame import AudioFrame, BlockBuffer
from voice.audio.resample import Resampler


class SpeexDenoiser:
    """An ``AudioStage`` (``"denoise"``) running SpeexDSP's noise suppressor on ``frame_ms`` blocks."""

    name = "denoise"

    def __init__(self, sample_rate: int = 16000, *, frame_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._state = NoiseSuppression.create(self.frame_samples, sample_rate)
        self._blocks = BlockBuffer(self.frame_samples)

    def process(self, frame: AudioFrame) -> AudioFrame:
        if frame.sample_rate != self.sample_rate:
            raise ValueError(f"denoise: frame at {frame.sample_rate} Hz, expected {self.sample_rate} Hz")
        blocks = self._blocks.feed(frame.pcm)
        if len(blocks) == 1:
            return AudioFrame(self._state.process(blocks[0]), self.sample_rate)
        return AudioFrame(b"".join(self._state.process(b) for b in blocks), self.sample_rate)

    def reset(self) -> None:
        self._state = NoiseSuppression.create(self.frame_samples, self.sample_rate)
        self._blocks.clear()


class RNNoiseDenoiser:
    """An ``AudioStage`` (``"denoise"``) running RNNoise (``pyrnnoise``) at 48 kHz, converting to and from ``sample_rate``.

    ``speech_probability`` is RNNoise's own voice probability for the last
    block (a by-product worth having in logs).
    """

    name = "denoise"
    RNNOISE_RATE = 48000

    def __init__(self, sample_rate: int = 16000) -> None:
        # Imported here: pyrnnoise loads its audio-file helpers (PyAV) on import,
        # which only a call that chose RNNoise should pay for.
        from pyrnnoise import rnnoise

        self._rnnoise = rnnoise
        self.sample_rate = sample_rate
        self._state = rnnoise.create()
        self._blocks = BlockBuffer(rnnoise.FRAME_SIZE)
        self._up = Resampler(sample_rate, self.RNNOISE_RATE, name="denoise.up")
        self._down = Resampler(self.RNNOISE_RATE, sample_rate, name="denoise.down")
        self.speech_probability = 0.0

    def process(self, frame: AudioFrame) -> AudioFrame:
        if frame.sample_rate != self.sample_rate:
            raise ValueError(f"denoise: frame at {frame.sample_rate} Hz, expected {self.sample_rate} Hz")
        up = self._up.process(frame)
        cleaned = []
        for block in self._blocks.feed(up.pcm):
            out, probability = self._rnnoise.process_mono_frame(self._state, np.frombuffer(block, dtype="<i2"))
            self.speech_probability = float(probability)
            cleaned.append(out.astype("<i2", copy=False).tobytes())
        if not cleaned:
            return AudioFrame.empty(self.sample_rate)
        return self._down.process(AudioFrame(b"".join(cleaned), self.RNNOISE_RATE))

    def reset(self) -> None:
        self._rnnoise.destroy(self._state)
        self._state = self._rnnoise.create()
        self._blocks.clear()
        self._up.reset()
        self._down.reset()
        self.speech_probability = 0.0

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self._rnnoise.destroy(state)
