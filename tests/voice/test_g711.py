"""G.711: ITU-T reference values, bit-exact agreement with audioop, round-trip quality."""

from __future__ import annotations

import unittest
import warnings

import numpy as np
from django.test import tag

from tests.voice.audio_samples import rms_dbfs, speech, tone
from voice.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # removed in Python 3.13; the project runs 3.11
    except ImportError:  # pragma: no cover - depends on the interpreter
        audioop = None


def pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return np.frombuffer(data, dtype="<i2").tolist()


def assert_round_trip(test: unittest.TestCase, original: np.ndarray, decoded: np.ndarray, *, min_snr_db: float) -> None:
    """Level within 0.2 dB and SNR at least ``min_snr_db``: a codec off by a factor of two fails both."""
    level_error = rms_dbfs(decoded) - rms_dbfs(original)
    test.assertLess(abs(level_error), 0.2, f"level off by {level_error:.2f} dB")
    error = decoded.astype(np.float64) - original.astype(np.float64)
    snr = 10 * np.log10(np.sum(original.astype(np.float64) ** 2) / np.sum(error**2))
    test.assertGreater(snr, min_snr_db, f"SNR {snr:.1f} dB")


@tag("no_db")
class ReferenceValuesTests(unittest.TestCase):
    def test_ulaw_vectors(self):
        self.assertEqual(samples(ulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80]))), [0, 0, -32124, 32124])
        self.assertEqual(ulaw_encode(pcm(0, -32124, 32124, 32767, -32768)), bytes([0xFF, 0x00, 0x80, 0x80, 0x00]))

    def test_alaw_vectors(self):
        self.assertEqual(samples(alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))), [8, -8, 32256, -32256])
        self.assertEqual(alaw_encode(pcm(8, -8, 32256, -32256, 0)), bytes([0xD5, 0x55, 0xAA, 0x2A, 0xD5]))

    def test_decode_then_encode_gives_back_every_code(self):
        codes = bytes(range(256))
        # μ-law has two zeros (0x7F and 0xFF decode to 0); 0 encodes to 0xFF.
        self.assertEqual(ulaw_encode(ulaw_decode(codes)), codes.replace(b"\x7f", b"\xff"))
        self.assertEqual(alaw_encode(alaw_decode(codes)), codes)

    def test_decoding_is_monotonic_in_magnitude(self):
        positive = samples(ulaw_decode(bytes(range(0xFF, 0x7F, -1))))
        self.assertEqual(positive, sorted(positive))
        self.assertEqual(len(set(positive)), 128)


@tag("no_db")
@unittest.skipIf(audioop is None, "audioop is gone from this Python")
class AudioopAgreementTests(unittest.TestCase):
    def test_every_sample_encodes_as_audioop_does(self):
        every = np.arange(65536, dtype=np.uint16).view(np.int16).astype("<i2").tobytes()
        self.assertEqual(ulaw_encode(every), audioop.lin2ulaw(every, 2))
        self.assertEqual(alaw_encode(every), audioop.lin2alaw(every, 2))

    def test_every_code_decodes_as_audioop_does(self):
        codes = bytes(range(256))
        self.assertEqual(ulaw_decode(codes), audioop.ulaw2lin(codes, 2))
        self.assertEqual(alaw_decode(codes), audioop.alaw2lin(codes, 2))


@tag("no_db")
class RoundTripTests(unittest.TestCase):
    def test_tone_round_trip_keeps_level_and_snr(self):
        x = tone((1000.0,), 1000, 8000, -20.0)
        for name, encode, decode in (("μ-law", ulaw_encode, ulaw_decode), ("A-law", alaw_encode, alaw_decode)):
            with self.subTest(name):
                y = np.frombuffer(decode(encode(x.tobytes())), dtype="<i2")
                # G.711's companding gives ~38 dB SNR over a wide range of levels.
                assert_round_trip(self, x, y, min_snr_db=33)

    def test_speech_round_trip(self):
        x = speech("Please hold while I transfer your call.", 8000, level_dbfs=-24)
        y = np.frombuffer(ulaw_decode(ulaw_encode(x.tobytes())), dtype="<i2")
        assert_round_trip(self, x, y, min_snr_db=30)

    def test_a_six_db_level_error_fails_the_check(self):
        x = tone((1000.0,), 200, 8000, -20.0)
        y = np.frombuffer(ulaw_decode(ulaw_encode(x.tobytes())), dtype="<i2")
        with self.assertRaises(AssertionError):
            assert_round_trip(self, x, (y // 2).astype(np.int16), min_snr_db=33)

    def test_empty_input(self):
        self.assertEqual(ulaw_encode(b""), b"")
        self.assertEqual(alaw_decode(b""), b"")
