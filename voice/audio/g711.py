"""G.711 μ-law and A-law, as ITU-T G.711 and the classic Sun reference code define them, in numpy.

Python 3.13 removed ``audioop``; this gives the same bytes. Each direction is
one table look-up per sample: decoding through a 256-entry table, encoding
through a 65,536-entry table indexed by the 16-bit sample itself, both built
once at import from the algorithm below (a table is ~50× faster than the bit
arithmetic per call, and the algorithm stays readable).

Twilio Media Streams carry μ-law at 8 kHz; A-law is the European PSTN's.
"""

from __future__ import annotations

import numpy as np

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # of 14-bit magnitudes: the largest encodable before the bias
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode_all() -> np.ndarray:
    """The μ-law byte of every 16-bit sample, indexed by the sample's unsigned 16-bit pattern."""
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag)  # first segment whose end >= mag
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _ulaw_decode_all() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype("<i2")


def _alaw_encode_all() -> np.ndarray:
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag)
    shift = np.where(seg < 2, 1, seg)
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_decode_all() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype("<i2")


_ULAW_ENCODE = _ulaw_encode_all()
_ULAW_DECODE = _ulaw_decode_all()
_ALAW_ENCODE = _alaw_encode_all()
_ALAW_DECODE = _alaw_decode_all()


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM to μ-law, one byte per sample."""
    return _ULAW_ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """μ-law bytes to 16-bit little-endian PCM."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM to A-law, one byte per sample."""
    return _ALAW_ENCODE[np.frombuffer(pcm, dtype="<u2")].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes to 16-bit little-endian PCM."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()
