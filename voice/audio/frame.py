"""The unit of audio every stage takes and returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_WIDTH = 2
"""Bytes per sample: every frame is 16-bit signed little-endian mono PCM."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A stretch of 16-bit little-endian mono PCM at ``sample_rate`` Hz.

    Frozen so that a stage can hand the same frame to a recorder, a VAD and a
    tap without anyone changing it under the others. A stage that is buffering
    returns an empty frame (``not frame``) at the same rate.
    """

    pcm: bytes
    sample_rate: int

    def __post_init__(self) -> None:
        if len(self.pcm) % SAMPLE_WIDTH:
            raise ValueError(f"PCM of {len(self.pcm)} bytes is not whole 16-bit samples")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {self.sample_rate}")

    def __bool__(self) -> bool:
        return bool(self.pcm)

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.num_samples / self.sample_rate

    @property
    def samples(self) -> np.ndarray:
        """The samples as a read-only int16 array (a view of ``pcm``, no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")

    @classmethod
    def from_samples(cls, samples: np.ndarray, sample_rate: int) -> AudioFrame:
        """A frame from int16 samples; other dtypes are rounded and clipped to int16."""
        if samples.dtype != np.int16:
            samples = np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
        return cls(samples.astype("<i2", copy=False).tobytes(), sample_rate)

    @classmethod
    def empty(cls, sample_rate: int) -> AudioFrame:
        return cls(b"", sample_rate)


class BlockBuffer:
    """Cuts a stream of PCM into blocks of exactly ``block_samples`` samples.

    Speex, WebRTC VAD, Silero and RNNoise each need a fixed block; the
    transport's frames rarely match. Feeding a frame returns the whole blocks
    now available (possibly none); the remainder waits for the next frame.
    """

    def __init__(self, block_samples: int) -> None:
        if block_samples <= 0:
            raise ValueError("block_samples must be positive")
        self.block_bytes = block_samples * SAMPLE_WIDTH
        self._pending = bytearray()

    def feed(self, pcm: bytes) -> list[bytes]:
        if not self._pending and len(pcm) == self.block_bytes:
            return [pcm]  # the common case (transport frames of the block size): no copy
        self._pending += pcm
        whole = len(self._pending) - len(self._pending) % self.block_bytes
        if not whole:
            return []
        blocks = [bytes(self._pending[i : i + self.block_bytes]) for i in range(0, whole, self.block_bytes)]
        del self._pending[:whole]
        return blocks

    @property
    def pending_samples(self) -> int:
        return len(self._pending) // SAMPLE_WIDTH

    def clear(self) -> None:
        self._pending.clear()
