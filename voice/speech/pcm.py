"""16-bit mono PCM as the engines need it: resampled, wrapped in WAV, unwrapped from a WAV stream."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Iterable, Iterator

import numpy as np
import soxr

SAMPLE_WIDTH = 2  # bytes per sample: 16-bit


def duration_ms(pcm: bytes, sample_rate: int) -> int:
    return len(pcm) // SAMPLE_WIDTH * 1000 // sample_rate


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """The same audio at ``to_rate`` (soxr, high quality); the input itself when the rates match."""
    if from_rate == to_rate or not pcm:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH], dtype="<i2")
    return soxr.resample(samples, from_rate, to_rate).astype("<i2").tobytes()


class StreamResampler:
    """Resamples a stream chunk by chunk, keeping the filter's state across chunks
    (resampling each chunk alone clicks at every boundary)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16")

    def push(self, pcm: bytes, *, last: bool = False) -> bytes:
        samples = np.frombuffer(pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH], dtype="<i2")
        return self._stream.resample_chunk(samples, last=last).astype("<i2").tobytes()


def to_float32(pcm: bytes) -> np.ndarray:
    """Samples in [-1, 1) as float32, the input of neural recognizers."""
    return np.frombuffer(pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH], dtype="<i2").astype(np.float32) / 32768.0


def to_wav(pcm: bytes, sample_rate: int) -> bytes:
    """A complete WAV file of the PCM (for APIs that take a file upload)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return out.getvalue()


class WavStreamDecoder:
    """PCM out of a WAV byte stream that arrives in pieces (a process's stdout).

    A streamed WAV cannot know its length when its header is written, so the
    sizes in it are placeholders: this reads the format, skips to the ``data``
    chunk and then passes every byte through, holding back an odd byte so each
    piece it returns is whole samples.
    """

    def __init__(self) -> None:
        self._header = b""
        self._in_data = False
        self._carry = b""
        self.sample_rate: int | None = None

    def push(self, chunk: bytes) -> bytes:
        if not self._in_data:
            self._header += chunk
            chunk = self._parse_header()
            if not self._in_data:
                return b""
        data = self._carry + chunk
        whole = len(data) - len(data) % SAMPLE_WIDTH
        self._carry = data[whole:]
        return data[:whole]

    def _parse_header(self) -> bytes:
        buf = self._header
        if len(buf) < 12:
            return b""
        if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
            raise ValueError("not a WAV stream")
        pos = 12
        while len(buf) >= pos + 8:
            chunk_id, size = buf[pos : pos + 4], struct.unpack("<I", buf[pos + 4 : pos + 8])[0]
            if chunk_id == b"data":
                self._in_data = True
                self._header = b""
                return buf[pos + 8 :]
            if len(buf) < pos + 8 + size:
                return b""
            if chunk_id == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", buf[pos + 8 : pos + 24])
                if fmt != 1 or channels != 1 or bits != 16:
                    raise ValueError(f"expected 16-bit mono PCM, got format {fmt}, {channels} channels, {bits} bits")
                self.sample_rate = rate
            pos += 8 + size + size % 2
        return b""


def whole_samples(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes, re-cut so no chunk splits a sample (HTTP bodies arrive cut anywhere)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        whole = len(data) - len(data) % SAMPLE_WIDTH
        carry = data[whole:]
        if whole:
            yield data[:whole]
