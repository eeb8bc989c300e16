"""Echo cancellation: the agent's own espeak-ng speech comes back through a room; the caller's voice survives."""

from __future__ import annotations

import unittest

import numpy as np
from django.test import tag

from tests.voice.audio_samples import frames, speech, white_noise
from voice.audio import AudioFrame, Resampler, SpeexEchoCanceller, inbound_pipeline, outbound_pipeline
from voice.audio.echo import echo_cancellation_available

RATE = 16000
TTS_RATE = 24000


def echo_room(played: np.ndarray) -> np.ndarray:
    """A loudspeaker-to-microphone path: 40 ms of delay, then three reflections."""
    h = np.zeros(1200)
    h[640], h[700], h[900] = 0.4, -0.2, 0.1
    return np.convolve(played.astype(np.float64), h)[: len(played)]


@unittest.skipUnless(
    echo_cancellation_available(), "speexaec is not installed (it builds against libspeexdsp-dev; see the Makefile)"
)
@tag("no_db")
class EchoCancellationTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tts = speech(
            "Thank you for calling. Your balance is one hundred and twenty dollars. Your next payment is due on "
            "the fourth of July. Is there anything else I can help you with today? You can also ask me about opening hours.",
            TTS_RATE,
            level_dbfs=-18,
        )
        cls.caller = speech("Yes, I have another question.", RATE, voice="en-gb", level_dbfs=-26)

    def call(self, *, with_aec: bool):
        """Play the reply and hear the room, 20 ms at a time, as a live call does; the caller talks over the end."""
        aec = SpeexEchoCanceller(RATE)
        outbound = outbound_pipeline(aec=aec if with_aec else None, resampler=Resampler(TTS_RATE, RATE))
        inbound = inbound_pipeline(aec=aec if with_aec else None)
        played = np.concatenate([outbound.process(f).frame.samples for f in frames(self.tts, TTS_RATE)])
        echo = echo_room(played)
        talk_start = len(echo) - len(self.caller) - RATE // 2
        mic = echo.copy()
        mic[talk_start : talk_start + len(self.caller)] += self.caller
        mic = np.clip(mic + white_noise(len(mic) / 16, RATE, -60.0, seed=5), -32768, 32767).astype(np.int16)
        # Replay in lockstep: each 20 ms of reply goes out (feeding the reference) as 20 ms of microphone comes in.
        aec.reset()
        outbound.reset()
        out = []
        tts_frames = list(frames(self.tts, TTS_RATE))
        for i, frame in enumerate(frames(mic, RATE)):
            if i < len(tts_frames):
                outbound.process(tts_frames[i])
            out.append(inbound.process(frame).frame.samples)
        return mic, np.concatenate(out).astype(np.float64), talk_start

    def test_echo_is_cancelled_and_the_caller_is_kept(self):
        mic, out, talk_start = self.call(with_aec=True)
        self.assertEqual(len(out), len(mic) - len(mic) % 320)

        def erle(a: int, b: int) -> float:
            return 10 * np.log10(np.sum(mic[a:b].astype(np.float64) ** 2) / np.sum(out[a:b] ** 2))

        # Converging on speech takes a couple of seconds; then the echo is down by 20 dB and more.
        self.assertGreater(erle(4 * RATE, talk_start), 20)
        # Double talk: the caller comes through, the echo does not.
        caller = self.caller.astype(np.float64)
        heard = out[talk_start : talk_start + len(caller)]
        raw = mic[talk_start : talk_start + len(caller)].astype(np.float64)
        self.assertGreater(np.corrcoef(heard, caller)[0, 1], 0.95)
        self.assertLess(np.corrcoef(raw, caller)[0, 1], 0.75)

    def test_without_reference_the_microphone_passes_untouched(self):
        aec = SpeexEchoCanceller(RATE)
        x = white_noise(1000, RATE, -30.0)
        out = b"".join(aec.process(f).pcm for f in frames(x, RATE))
        self.assertEqual(out, x.tobytes())

    def test_reference_at_another_rate_is_converted_and_bounded(self):
        aec = SpeexEchoCanceller(RATE, max_reference_ms=1000)
        for f in frames(np.ones(TTS_RATE * 3, dtype=np.int16), TTS_RATE):
            aec.feed_reference(f)
        self.assertAlmostEqual(aec.pending_reference_ms, 1000, delta=1)
        aec.process(AudioFrame(bytes(640 * 10), RATE))  # 200 ms of microphone uses 200 ms of reference
        self.assertAlmostEqual(aec.pending_reference_ms, 800, delta=1)
