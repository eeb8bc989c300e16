"""Audio levels over fixed intervals of stream time: what the VAD reports and the level hooks carry.

A meter is fed 16-bit PCM in chunks of any length and reports, for each
interval of ``interval_ms`` the chunks complete, the RMS and peak level in
dBFS. Intervals follow the audio's own clock (samples), so a two-second chunk
of synthesized speech gives twenty readings, not one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SILENT_DBFS = -120.0


@dataclass(frozen=True, slots=True)
class Level:
    """One interval's level: RMS and peak in dBFS (−120 for digital silence)."""

    rms_dbfs: float
    peak_dbfs: float


def _dbfs(amplitude: float) -> float:
    return 20 * math.log10(amplitude / 32768) if amplitude > 0 else SILENT_DBFS


class LevelMeter:
    """RMS and peak of 16-bit mono PCM at ``sample_rate`` per ``interval_ms`` of audio."""

    def __init__(self, sample_rate: int, interval_ms: int = 100) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.interval_samples = max(1, sample_rate * interval_ms // 1000)
        self._energy = 0.0
        self._peak = 0
        self._count = 0

    def feed(self, pcm: bytes) -> list[Level]:
        """The levels of the intervals this audio completes (usually none or one)."""
        samples = np.frombuffer(pcm, dtype="<i2")
        levels = []
        start = 0
        while start < len(samples):
            take = min(self.interval_samples - self._count, len(samples) - start)
            part = samples[start : start + take]
            x = part.astype(np.float64)  # float32 sums drift with how the audio was chunked
            self._energy += float(np.dot(x, x))
            self._peak = max(self._peak, int(np.abs(part.astype(np.int32)).max()))
            self._count += take
            start += take
            if self._count == self.interval_samples:
                levels.append(Level(_dbfs(math.sqrt(self._energy / self._count)), _dbfs(self._peak)))
                self._energy, self._peak, self._count = 0.0, 0, 0
        return levels
