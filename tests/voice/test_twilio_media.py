"""One Twilio Media Stream's audio and marks (``voice.twilio_media``): framing, levels, what the caller heard, clear.

The transport writes its messages through a function it is given; here that
function keeps them, as Twilio would receive them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from django.test import SimpleTestCase, tag

from tests.voice.audio_samples import rms_dbfs, tone
from tests.voice.twilio_fixtures import payload_samples, stream_message, ulaw_payload
from voice.twilio_media import FRAME_BYTES, TwilioMediaTransport

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"


class _Twilio:
    """What Twilio receives from one transport."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def receive(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["event"] == event]

    def audio(self) -> np.ndarray:
        return np.concatenate([payload_samples(m["media"]["payload"]) for m in self.of("media")])


def run(coro):
    return asyncio.run(coro)


@tag("no_db")
class OutboundTests(SimpleTestCase):
    def test_speech_goes_out_in_20_ms_media_messages_with_a_mark_after_each_chunk(self) -> None:
        twilio = _Twilio()

        async def call() -> TwilioMediaTransport:
            transport = TwilioMediaTransport(twilio.receive, STREAM)
            await transport.play(tone((440.0,), 50, 8000, -20).tobytes())  # 2 frames, 10 ms held back
            await transport.play(tone((440.0,), 35, 8000, -20).tobytes())  # 45 ms: 2 more, 5 ms held back
            return transport

        transport = run(call())
        self.assertEqual([m["event"] for m in twilio.messages], ["media", "media", "mark", "media", "media", "mark"])
        documented = stream_message("media", stream_sid=STREAM, direction="to_twilio")
        for message in twilio.of("media"):
            self.assertEqual(message.keys(), documented.keys())
            self.assertEqual(message["streamSid"], STREAM)
            self.assertEqual(len(payload_samples(message["media"]["payload"])), FRAME_BYTES)
        self.assertTrue(all(m["streamSid"] == STREAM and m["mark"]["name"] for m in twilio.of("mark")))
        self.assertEqual(transport.sent_ms, 80)
        names = [m["mark"]["name"] for m in twilio.of("mark")]
        self.assertFalse(transport.mark_played(names[0]), "more was sent after it")
        self.assertTrue(transport.mark_played(names[1]), "the caller has heard all that was sent")
        self.assertEqual(transport.heard_ms, 80)

        # The end of the playback sends the last 5 ms, padded to a whole frame with silence.
        run(transport.control({"type": "playback_stop", "reason": "done"}))
        self.assertEqual([m["event"] for m in twilio.messages[6:]], ["media"])
        tail = payload_samples(twilio.of("media")[-1]["media"]["payload"])
        self.assertTrue(np.any(tail[:40] != 0) and np.all(tail[40:] == 0), "5 ms of speech, then silence")
        self.assertEqual(transport.sent_ms, 100)

    def test_the_codec_round_trip_keeps_the_level_both_ways(self) -> None:
        # G.711 μ-law in and out through the Twilio path: no 6 dB error (the classic: a 14- or 13-bit
        # value treated as 16-bit, or the wrong law), and the 8 → 16 kHz resampler keeps the level too.
        for level in (-30.0, -20.0, -10.0):
            signal = tone((1000.0,), 500, 8000, level)
            twilio = _Twilio()

            async def call(signal: np.ndarray = signal, twilio: _Twilio = twilio) -> bytes:
                transport = TwilioMediaTransport(twilio.receive, STREAM)
                await transport.play(signal.tobytes())
                return b"".join(
                    transport.caller_audio(ulaw_payload(signal[i : i + FRAME_BYTES])) for i in range(0, len(signal), FRAME_BYTES)
                )

            heard_by_session = np.frombuffer(run(call()), dtype="<i2")
            sent_to_caller = twilio.audio()
            with self.subTest(level=level):
                self.assertAlmostEqual(rms_dbfs(sent_to_caller), level, delta=0.3)
                # 16 kHz now; leave out the resampler's first and last 10 ms.
                self.assertAlmostEqual(rms_dbfs(heard_by_session[320:-320]), level, delta=0.3)
                self.assertGreater(len(heard_by_session), 2 * len(signal) - 400)

    def test_a_payload_that_is_not_base64_is_dropped(self) -> None:
        transport = TwilioMediaTransport(_Twilio().receive, STREAM)
        with self.assertLogs("voice.twilio_media", "WARNING"):
            self.assertEqual(transport.caller_audio("not base64!"), b"")


@tag("no_db")
class MarkTests(SimpleTestCase):
    def play_reply(self, chunks: int) -> tuple[_Twilio, TwilioMediaTransport]:
        twilio = _Twilio()

        async def call() -> TwilioMediaTransport:
            transport = TwilioMediaTransport(twilio.receive, STREAM)
            for _ in range(chunks):
                await transport.play(tone((300.0,), 100, 8000, -20).tobytes())
            return transport

        return twilio, run(call())

    def test_echoed_marks_say_how_much_the_caller_heard(self) -> None:
        twilio, transport = self.play_reply(4)
        names = [m["mark"]["name"] for m in twilio.of("mark")]
        self.assertEqual(len(names), 4)
        self.assertEqual(transport.heard_ms, 0)

        transport.mark_played(names[0])
        self.assertEqual(transport.heard_ms, 100)
        transport.mark_played(names[2])  # Twilio plays in order: the second is heard too
        self.assertEqual(transport.heard_ms, 300)
        transport.mark_played(names[1])  # its late echo says nothing new
        transport.mark_played("someone else's")
        self.assertEqual(transport.heard_ms, 300)

    def test_clear_stops_playback_and_the_marks_twilio_echoes_for_it_are_not_heard(self) -> None:
        twilio, transport = self.play_reply(5)
        names = [m["mark"]["name"] for m in twilio.of("mark")]
        transport.mark_played(names[0])

        run(transport.stop_playback())

        self.assertEqual(twilio.messages[-1], stream_message("clear", stream_sid=STREAM, direction="to_twilio"))
        # Twilio answers a clear with the marks it still held: they were not heard.
        self.assertEqual([transport.mark_played(name) for name in names[1:]], [False] * 4)
        self.assertEqual(transport.heard_ms, 100)
        # Nothing of the cleared reply is sent when the session then ends the playback.
        run(transport.control({"type": "playback_stop", "reason": "barge_in"}))
        self.assertEqual(twilio.messages[-1]["event"], "clear")

    def test_a_new_reply_counts_from_its_own_start(self) -> None:
        twilio, transport = self.play_reply(2)
        first = [m["mark"]["name"] for m in twilio.of("mark")]

        async def next_reply() -> None:
            await transport.control({"type": "playback_stop", "reason": "done"})
            await transport.play(tone((300.0,), 100, 8000, -20).tobytes())

        run(next_reply())
        transport.mark_played(first[1])  # an echo of the last reply: not this one's
        self.assertEqual((transport.sent_ms, transport.heard_ms), (100, 0))
        transport.mark_played(twilio.of("mark")[-1]["mark"]["name"])
        self.assertEqual(transport.heard_ms, 100)
