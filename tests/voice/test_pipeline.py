"""The pipeline: order, native capabilities, timings, a failing stage, taps, events; AudioFrame and BlockBuffer."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from voice.audio import (
    AudioEvent,
    AudioFrame,
    AutomaticGainControl,
    BlockBuffer,
    DtmfDetector,
    Pipeline,
    Resampler,
    SpeexDenoiser,
    SpeexEchoCanceller,
    VoiceActivityDetector,
    WavRecorder,
    WebRtcSpeechDetector,
    inbound_pipeline,
    outbound_pipeline,
)
from voice.audio.events import SpeechStart


class Recording:
    """A stage that notes what it saw, and can add to the frame or emit an event."""

    def __init__(self, name: str, log: list, *, append: bytes = b"", event: bool = False) -> None:
        self.name, self.log, self.append, self.event = name, log, append, event
        self.resets = 0
        self.pending: list[AudioEvent] = []

    def process(self, frame: AudioFrame) -> AudioFrame:
        self.log.append((self.name, frame.pcm))
        if self.event:
            self.pending.append(SpeechStart(at_ms=len(self.log)))
        return AudioFrame(frame.pcm + self.append, frame.sample_rate)

    def drain_events(self) -> list[AudioEvent]:
        events, self.pending = self.pending, []
        return events

    def reset(self) -> None:
        self.resets += 1


class Exploding:
    name = "denoise"

    def __init__(self) -> None:
        self.calls = 0

    def process(self, frame: AudioFrame) -> AudioFrame:
        self.calls += 1
        raise RuntimeError("native library fell over")

    def reset(self) -> None:
        pass


class Buffering:
    name = "buffering"

    def process(self, frame: AudioFrame) -> AudioFrame:
        return AudioFrame.empty(frame.sample_rate)

    def reset(self) -> None:
        pass


FRAME = AudioFrame(b"\x01\x00\x02\x00", 16000)


@tag("no_db")
class PipelineTests(unittest.TestCase):
    def test_stages_run_in_order_each_on_the_previous_output(self):
        log: list = []
        pipeline = Pipeline([Recording("a", log, append=b"\x0a\x00"), Recording("b", log, append=b"\x0b\x00")])
        out = pipeline.process(FRAME)
        self.assertEqual(log, [("a", FRAME.pcm), ("b", FRAME.pcm + b"\x0a\x00")])
        self.assertEqual(out.frame.pcm, FRAME.pcm + b"\x0a\x00\x0b\x00")

    def test_taps_see_the_raw_input_and_their_output_is_dropped(self):
        log: list = []
        pipeline = Pipeline([Recording("main", log, append=b"\x01\x00")], taps=[Recording("tap", log, append=b"\x09\x00")])
        out = pipeline.process(FRAME)
        self.assertIn(("tap", FRAME.pcm), log)
        self.assertEqual(out.frame.pcm, FRAME.pcm + b"\x01\x00")

    def test_events_are_collected_in_stage_order(self):
        log: list = []
        pipeline = Pipeline(
            [Recording("a", log, event=True), Recording("b", log, event=True)], taps=[Recording("t", log, event=True)]
        )
        events = pipeline.process(FRAME).events
        self.assertEqual([e.at_ms for e in events], [1, 2, 3])  # tap first (raw input), then a, then b

    def test_native_capabilities_are_skipped(self):
        log: list = []
        stages = [Recording(n, log) for n in ("resampler", "aec", "agc", "denoise", "vad")]
        pipeline = Pipeline(stages, native={"aec", "agc", "denoise"})
        pipeline.process(FRAME)
        self.assertEqual([n for n, _ in log], ["resampler", "vad"])
        self.assertEqual(pipeline.skipped, ["aec", "agc", "denoise"])
        self.assertEqual(pipeline.stage_names, ["resampler", "vad"])

    def test_a_failing_stage_is_logged_once_then_bypassed(self):
        log: list = []
        boom = Exploding()
        pipeline = Pipeline([Recording("agc", log, append=b"\x07\x00"), boom, Recording("vad", log)])
        with self.assertLogs("voice.audio.pipeline", level="ERROR") as logs:
            outs = [pipeline.process(FRAME) for _ in range(5)]
        self.assertEqual(len(logs.records), 1)
        self.assertIn("'denoise' failed", logs.output[0])
        self.assertEqual(boom.calls, 1)
        self.assertEqual(pipeline.bypassed, {"denoise": "RuntimeError: native library fell over"})
        # The call goes on: the stage's input reaches the next stage every time.
        self.assertEqual([n for n, _ in log].count("vad"), 5)
        self.assertTrue(all(o.frame.pcm == FRAME.pcm + b"\x07\x00" for o in outs))

    def test_a_buffering_stage_ends_the_call_early(self):
        log: list = []
        out = Pipeline([Buffering(), Recording("vad", log)]).process(FRAME)
        self.assertFalse(out.frame)
        self.assertEqual(log, [])

    def test_timings_add_up_per_stage(self):
        log: list = []
        pipeline = Pipeline([Recording("a", log), Recording("b", log)], taps=[Recording("t", log)], name="inbound")
        for _ in range(7):
            pipeline.process(FRAME)
        timings = {t.name: t for t in pipeline.timings()}
        self.assertEqual({n: t.calls for n, t in timings.items()}, {"a": 7, "b": 7, "t": 7})
        self.assertTrue(all(t.total_ns > 0 for t in timings.values()))
        summary = pipeline.timing_summary()
        self.assertRegex(summary, r"^inbound: a \d+µs/7 \([\d.]+µs\) · b \d+µs/7 \([\d.]+µs\) · t ")
        pipeline.reset_timings()
        self.assertEqual([t.calls for t in pipeline.timings()], [0, 0, 0])

    def test_reset_reaches_every_stage(self):
        log: list = []
        stages = [Recording("a", log), Recording("b", log)]
        Pipeline(stages).reset()
        self.assertEqual([s.resets for s in stages], [1, 1])

    def test_duplicate_names_are_refused(self):
        with self.assertRaises(ValueError):
            Pipeline([Recording("a", []), Recording("a", [])])


@tag("no_db")
class BuildersTests(unittest.TestCase):
    def test_inbound_order_is_roomkits(self):
        aec = SpeexEchoCanceller(16000)
        pipeline = inbound_pipeline(
            resampler=Resampler(8000, 16000),
            recorder=WavRecorder(),
            aec=aec,
            agc=AutomaticGainControl(),
            denoiser=SpeexDenoiser(16000),
            vad=VoiceActivityDetector(WebRtcSpeechDetector(16000)),
            dtmf=DtmfDetector(8000),
        )
        self.assertEqual(pipeline.stage_names, ["resampler", "recorder", "aec", "agc", "denoise", "vad", "dtmf"])
        out = pipeline.process(AudioFrame(bytes(320), 8000))
        self.assertEqual(pipeline.bypassed, {})
        self.assertEqual(out.frame.sample_rate, 16000)

    def test_a_browser_source_skips_aec_agc_and_denoise_both_ways(self):
        aec = SpeexEchoCanceller(16000)
        native = {"aec", "agc", "denoise"}
        inbound = inbound_pipeline(
            aec=aec, agc=AutomaticGainControl(), denoiser=SpeexDenoiser(16000), recorder=WavRecorder(), native=native
        )
        outbound = outbound_pipeline(recorder=WavRecorder(), aec=aec, resampler=Resampler(24000, 16000), native=native)
        self.assertEqual(inbound.stage_names, ["recorder"])
        self.assertEqual(outbound.stage_names, ["recorder", "resampler"])
        self.assertEqual(outbound.skipped, ["aec.reference"])

    def test_outbound_order_and_reference_feed(self):
        aec = SpeexEchoCanceller(16000)
        outbound = outbound_pipeline(recorder=WavRecorder(), aec=aec, resampler=Resampler(24000, 8000))
        self.assertEqual(outbound.stage_names, ["recorder", "aec.reference", "resampler"])
        outbound.process(AudioFrame(bytes(960), 24000))  # 20 ms at 24 kHz
        # The reference is converted to the canceller's rate (soxr holds some of it back at first).
        self.assertGreaterEqual(aec.pending_reference_ms, 0)
        for _ in range(20):
            outbound.process(AudioFrame(bytes(960), 24000))
        self.assertGreater(aec.pending_reference_ms, 300)


@tag("no_db")
class FrameTests(unittest.TestCase):
    def test_frame_basics(self):
        frame = AudioFrame.from_samples(np.array([0, 1000, -1000, 40000.0]), 8000)
        self.assertEqual(frame.samples.tolist(), [0, 1000, -1000, 32767])
        self.assertEqual(frame.num_samples, 4)
        self.assertAlmostEqual(frame.duration_ms, 0.5)
        self.assertFalse(AudioFrame.empty(8000))
        with self.assertRaises(ValueError):
            AudioFrame(b"\x00", 8000)
        with self.assertRaises(ValueError):
            AudioFrame(b"", 0)

    def test_block_buffer_cuts_any_frames_into_exact_blocks(self):
        buffer = BlockBuffer(3)
        data = np.arange(20, dtype="<i2").tobytes()
        blocks = buffer.feed(data[:4]) + buffer.feed(data[4:18]) + buffer.feed(data[18:])
        self.assertEqual(b"".join(blocks), data[:36])
        self.assertTrue(all(len(b) == 6 for b in blocks))
        self.assertEqual(buffer.pending_samples, 2)
