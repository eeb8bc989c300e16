"""WAV recording: what goes through is what the file holds; start, stop, duration."""

from __future__ import annotations

import tempfile
import unittest
import wave
from pathlib import Path

from django.test import tag

from tests.voice.audio_samples import frames, tone
from voice.audio import AudioFrame, Resampler, WavRecorder, inbound_pipeline, outbound_pipeline


@tag("no_db")
class RecorderTests(unittest.TestCase):
    def setUp(self):
        scratch = tempfile.TemporaryDirectory()
        self.addCleanup(scratch.cleanup)
        self.dir = Path(scratch.name)

    def read(self, path: Path) -> tuple[bytes, int, int, int]:
        with wave.open(str(path)) as wav:
            return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels(), wav.getsampwidth()

    def test_frames_pass_through_and_land_in_the_file(self):
        recorder = WavRecorder()
        x = tone((440.0,), 1000, 16000, -20)
        recorder.start(self.dir / "in.wav")
        self.assertTrue(recorder.recording)
        for frame in frames(x, 16000):
            self.assertIs(recorder.process(frame), frame)
        self.assertAlmostEqual(recorder.duration_ms, 1000)
        done = recorder.stop()
        self.assertFalse(recorder.recording)
        self.assertEqual((done.path, done.sample_rate, done.duration_ms), (self.dir / "in.wav", 16000, 1000))
        self.assertEqual(self.read(done.path), (x.tobytes(), 16000, 1, 2))

    def test_only_between_start_and_stop(self):
        recorder = WavRecorder()
        recorder.process(AudioFrame(b"\x01\x00" * 80, 8000))
        recorder.start(self.dir / "a.wav")
        recorder.process(AudioFrame(b"\x02\x00" * 80, 8000))
        recorder.stop()
        recorder.process(AudioFrame(b"\x03\x00" * 80, 8000))
        self.assertEqual(self.read(self.dir / "a.wav")[0], b"\x02\x00" * 80)
        self.assertIsNone(recorder.stop())

    def test_a_second_recording_with_the_same_recorder(self):
        recorder = WavRecorder()
        for name, value in (("one.wav", b"\x01\x00"), ("two.wav", b"\x02\x00")):
            recorder.start(self.dir / name)
            recorder.process(AudioFrame(value * 160, 8000))
            self.assertEqual(recorder.stop().duration_ms, 20)
        self.assertEqual(self.read(self.dir / "two.wav")[0], b"\x02\x00" * 160)

    def test_nothing_recorded_still_leaves_a_valid_file(self):
        recorder = WavRecorder()
        recorder.start(self.dir / "empty.wav")
        done = recorder.stop()
        self.assertEqual(done.duration_ms, 0)
        self.assertEqual(self.read(done.path)[0], b"")

    def test_refuses_a_rate_change_and_a_double_start(self):
        recorder = WavRecorder()
        recorder.start(self.dir / "r.wav")
        recorder.process(AudioFrame(bytes(320), 8000))
        with self.assertRaises(ValueError):
            recorder.process(AudioFrame(bytes(640), 16000))
        with self.assertRaises(RuntimeError):
            recorder.start(self.dir / "other.wav")
        recorder.reset()
        self.assertFalse(recorder.recording)

    def test_inbound_and_outbound_recordings_of_a_call(self):
        inbound_rec, outbound_rec = WavRecorder(), WavRecorder()
        inbound = inbound_pipeline(resampler=Resampler(8000, 16000), recorder=inbound_rec)
        outbound = outbound_pipeline(recorder=outbound_rec, resampler=Resampler(24000, 8000))
        inbound_rec.start(self.dir / "caller.wav")
        outbound_rec.start(self.dir / "agent.wav")
        for frame in frames(tone((300.0,), 2000, 8000, -20), 8000):
            inbound.process(frame)
        for frame in frames(tone((500.0,), 1000, 24000, -20), 24000):
            outbound.process(frame)
        caller, agent = inbound_rec.stop(), outbound_rec.stop()
        # The inbound recorder sits after the resampler (16 kHz: what the STT hears); soxr still holds a little.
        self.assertEqual(caller.sample_rate, 16000)
        self.assertAlmostEqual(caller.duration_ms, 2000, delta=120)
        self.assertEqual((agent.sample_rate, agent.duration_ms), (24000, 1000))
