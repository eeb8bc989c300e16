"""Test audio: real speech from espeak-ng and signals made with numpy."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import unittest
import wave

import numpy as np
import soxr

ESPEAK = shutil.which("espeak-ng")


@functools.cache
def _espeak(text: str, voice: str) -> tuple[bytes, int]:
    if ESPEAK is None:
        raise unittest.SkipTest("espeak-ng is not installed (apt-get install -y espeak-ng): no real speech to test with")
    wav_bytes = subprocess.run([ESPEAK, "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate()


def speech(text: str, sample_rate: int = 16000, *, voice: str = "en-us", level_dbfs: float | None = -20.0) -> np.ndarray:
    """``text`` spoken by espeak-ng as int16 at ``sample_rate``; normalized to ``level_dbfs`` RMS (None: as spoken)."""
    pcm, rate = _espeak(text, voice)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    # espeak-ng's stdout header has no length, so a little of the stream's tail can be padding: trim silence at both ends.
    voiced = np.flatnonzero(np.abs(x) > 64)
    x = x[voiced[0] : voiced[-1] + 1]
    x = soxr.resample(x, rate, sample_rate, quality="VHQ")
    if level_dbfs is not None:
        x *= 32768 * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(x**2))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def silence(ms: float, sample_rate: int = 16000) -> np.ndarray:
    return np.zeros(int(sample_rate * ms / 1000), dtype=np.int16)


def tone(freqs: tuple[float, ...], ms: float, sample_rate: int, level_dbfs: float) -> np.ndarray:
    """A sum of sines, each at ``level_dbfs`` RMS."""
    t = np.arange(int(sample_rate * ms / 1000)) / sample_rate
    amplitude = 32768 * np.sqrt(2) * 10 ** (level_dbfs / 20)
    x = sum(amplitude * np.sin(2 * np.pi * f * t) for f in freqs)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def white_noise(ms: float, sample_rate: int, level_dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 32768 * 10 ** (level_dbfs / 20), int(sample_rate * ms / 1000))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def mix(*signals: np.ndarray) -> np.ndarray:
    n = max(len(s) for s in signals)
    out = np.zeros(n, dtype=np.float64)
    for s in signals:
        out[: len(s)] += s
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def rms_dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(x**2)) / 32768 + 1e-12)


def frames(x: np.ndarray, sample_rate: int, ms: float = 20):
    """``x`` cut into AudioFrames of ``ms`` (the last one may be shorter)."""
    from voice.audio import AudioFrame

    n = int(sample_rate * ms / 1000)
    for i in range(0, len(x), n):
        yield AudioFrame(x[i : i + n].astype("<i2").tobytes(), sample_rate)


def best_lag(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """The delay in samples (0..max_lag) at which ``y`` best matches ``x`` (FFT cross-correlation)."""
    n = len(x) + len(y)
    spectrum = np.fft.rfft(y.astype(np.float64), n) * np.conj(np.fft.rfft(x.astype(np.float64), n))
    correlation = np.fft.irfft(spectrum, n)[: max_lag + 1]
    return int(np.argmax(correlation))
