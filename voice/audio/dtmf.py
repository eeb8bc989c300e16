"""DTMF (touch-tone) detection with the Goertzel single-bin DFT, at 8 or 16 kHz.

Blocks of 25.6 ms (205 samples at 8 kHz: the classic size, whose 39 Hz bins
separate 697 from 770 Hz), every 12.8 ms. A block holds a key when all of
these hold for the strongest row tone and the strongest column tone:

- each tone is at least ``min_level_dbfs`` (RMS of that tone);
- twist: the row tone exceeds the column tone by at most
  ``max_normal_twist_db`` (8 dB: lines lose highs), the column exceeds the row
  by at most ``max_reverse_twist_db`` (4 dB);
- each tone is ``min_peak_ratio_db`` above the other tones of its group;
- the two tones carry at least ``min_tone_fraction`` of the block's energy
  (speech and noise spread theirs; a block only partly filled by a tone
  also fails, which is what makes short blips fall short);
- the second harmonic of the column tone is ``min_harmonic_ratio_db`` below
  it (voiced speech is rich in harmonics, a DTMF generator is not; the row
  tones' harmonics, 1394–1882 Hz, sit among the column tones, so only the
  column's is checked).

A key is reported once, as soon as it has held for ``min_duration_ms``
(ITU-T Q.24: 40 ms must be accepted; tones well under that are not), and
again only after it has been absent for two blocks (a pause).

The Goertzel value at each of the 12 frequencies (8 tones, 4 harmonics) is
computed for all of a frame's blocks as one matrix product: the same number
the recurrence gives, without a Python loop per sample.
"""

from __future__ import annotations

import math

import numpy as np

from voice.audio.events import AudioEvent, DtmfDigit
from voice.audio.frame import AudioFrame

ROW_HZ = (697.0, 770.0, 852.0, 941.0)
COLUMN_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
BLOCK_SECONDS = 205 / 8000


class DtmfDetector:
    """An ``AudioStage`` (``"dtmf"``) and ``EventSource``: frames pass through; ``DtmfDigit`` events are drained.

    Meant as a pipeline tap on the raw input (see ``inbound_pipeline``).
    """

    name = "dtmf"

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        min_duration_ms: float = 40.0,
        min_level_dbfs: float = -33.0,
        max_normal_twist_db: float = 8.0,
        max_reverse_twist_db: float = 4.0,
        min_peak_ratio_db: float = 6.0,
        min_tone_fraction: float = 0.7,
        min_harmonic_ratio_db: float = 15.0,
    ) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError(f"DTMF detection runs at 8 or 16 kHz, not {sample_rate}")
        self.sample_rate = sample_rate
        self.block = round(BLOCK_SECONDS * sample_rate)
        self.hop = self.block // 2
        self.block_ms = 1000.0 * self.block / sample_rate
        self.hop_ms = 1000.0 * self.hop / sample_rate
        self.required_blocks = max(1, round((min_duration_ms - self.block_ms) / self.hop_ms) + 1)
        # Thresholds as powers of the single-bin DFT: a sine at RMS level L dBFS has
        # amplitude A = 32768·√2·10^(L/20) and |X|² = (A·N/2)²; ratios in dB become 10^(dB/10).
        min_amplitude = 32768 * math.sqrt(2) * 10 ** (min_level_dbfs / 20)
        self._min_power = (min_amplitude * self.block / 2) ** 2
        self._min_block_energy = min_amplitude**2 * self.block  # two tones at the minimum level, over one block
        self._max_normal_twist = 10 ** (max_normal_twist_db / 10)
        self._max_reverse_twist = 10 ** (max_reverse_twist_db / 10)
        self._min_peak_ratio = 10 ** (min_peak_ratio_db / 10)
        self.min_tone_fraction = min_tone_fraction
        self._min_harmonic_ratio = 10 ** (min_harmonic_ratio_db / 10)
        freqs = np.array([*ROW_HZ, *COLUMN_HZ, *(2 * f for f in COLUMN_HZ)])
        phase = 2 * np.pi * np.outer(np.arange(self.block), freqs) / sample_rate
        self._basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1).astype(np.float32)  # block × 24
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # samples before the tail's start
        self._run_key: str | None = None
        self._run_length = 0
        self._run_start = 0
        self._reported: str | None = None
        self._absent = 0
        self._events: list[AudioEvent] = []

    def drain_events(self) -> list[AudioEvent]:
        events, self._events = self._events, []
        return events

    def process(self, frame: AudioFrame) -> AudioFrame:
        if frame.sample_rate != self.sample_rate:
            raise ValueError(f"dtmf: frame at {frame.sample_rate} Hz, expected {self.sample_rate} Hz")
        x = np.concatenate([self._tail, frame.samples.astype(np.float32)])
        count = (len(x) - self.block) // self.hop + 1 if len(x) >= self.block else 0
        if count > 0:
            if float(np.dot(x, x)) < self._min_block_energy:
                keys: list[str | None] = [None] * count  # too quiet for any key: skip the analysis
            else:
                keys = self._classify(np.stack([x[i * self.hop : i * self.hop + self.block] for i in range(count)]))
            for index, key in enumerate(keys):
                self._track(key, self._consumed + index * self.hop)
            self._tail = x[count * self.hop :]
            self._consumed += count * self.hop
        else:
            self._tail = x
        return frame

    def _classify(self, blocks: np.ndarray) -> list[str | None]:
        """The key each block holds, or None.

        numpy does the arithmetic over the block (one matrix product); the
        checks are on 12 numbers per block, where plain Python floats beat
        numpy's per-call overhead several times over. Compared as powers
        (squared amplitudes): no square roots.
        """
        projection = blocks @ self._basis  # blocks × 24: cos then sin parts
        power = projection[:, :12] ** 2 + projection[:, 12:] ** 2
        energy = np.einsum("ij,ij->i", blocks, blocks)
        keys: list[str | None] = []
        for p, total in zip(power.tolist(), energy.tolist(), strict=True):
            rows, columns = p[0:4], p[4:8]
            row, column = max(rows), max(columns)
            if row < self._min_power or column < self._min_power:
                keys.append(None)
                continue
            r, c = rows.index(row), columns.index(column)
            ok = (
                row <= column * self._max_normal_twist
                and column <= row * self._max_reverse_twist
                and all(row >= self._min_peak_ratio * v for i, v in enumerate(rows) if i != r)
                and all(column >= self._min_peak_ratio * v for i, v in enumerate(columns) if i != c)
                # |X|² = (A·N/2)² for a sine of amplitude A, whose energy over the block is A²·N/2.
                and (row + column) * 2 / self.block >= self.min_tone_fraction * total
                and p[8 + c] * self._min_harmonic_ratio <= column
            )
            keys.append(KEYS[r][c] if ok else None)
        return keys

    def _track(self, key: str | None, start_sample: int) -> None:
        if key is not None and key == self._run_key:
            self._run_length += 1
        else:
            self._run_key, self._run_length, self._run_start = key, 1, start_sample
        if key is None or key != self._reported:
            self._absent += 1
            if self._absent >= 2:
                self._reported = None
        else:
            self._absent = 0
        if key is not None and key != self._reported and self._run_length >= self.required_blocks:
            self._reported = key
            self._absent = 0
            self._events.append(DtmfDigit(1000.0 * self._run_start / self.sample_rate, key))
