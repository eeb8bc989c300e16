"""The browser voice page (``/voice/``) in a real browser: Playwright driving Debian's Chromium.

Run with ``ROOMKIT_E2E=1 make test TESTS=tests.e2e.test_voice_page``.

- ``VoiceWorkletTests``: the AudioWorklets alone, no server: the capture
  worklet turns 48 / 44.1 kHz tones into 640-byte frames of 16 kHz PCM that
  keep the tone and drop what 16 kHz cannot carry; the playback worklet's
  jitter buffer starts, waits for late chunks and flushes without a click.
- ``VoicePageBrowserTests``: the page on a real Daphne (the view, its policy,
  the session endpoint) with a fake microphone (espeak-ng speech) and
  ``/ws/voice/`` answered by the test with the contract's frames.
- ``VoiceCallEndToEndTests``: the page against the real consumer
  (``voice/consumer.py``): speech in, transcript and the agent's speech out.
  Skipped, saying so, while the consumer is not in the tree.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import os
import unittest
from typing import Any
from unittest import mock

import httpx
import numpy as np
import websockets
from django.core.management import call_command
from django.test import SimpleTestCase

from channels_app.webchat.tokens import chat_token_verify
from rooms.models import Channel, RoomEvent
from rooms.selectors import CHANNEL_CACHE_TTL
from tests.concurrency.processes import quiet_logger
from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    E2E_ENABLED,
    SKIP_REASON,
    BrowserTestCase,
    off_loop,
    require_browser,
    wait_until,
)
from tests.e2e.voice_support import (
    CAPTURE_TONE_JS,
    PLAYBACK_RIG_JS,
    FakeVoiceCall,
    FakeVoiceServer,
    StaticSite,
    fake_microphone_args,
    greet,
    pump_until,
    sine_pcm,
    speech_wav,
    voice_stats,
)
from tests.support import make_channel


def tone_analysis(x: np.ndarray, rate: int, expected_hz: float) -> tuple[float, float, float]:
    """(frequency in Hz, RMS in dBFS, SNR in dB) of a single tone.

    The frequency is the strongest FFT bin, refined between its neighbours;
    the SNR is the tone at ``expected_hz`` (the input's, exactly) against
    everything else: resampling errors, aliases, a seam between frames.
    """
    x = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    freq = (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(x)
    t = np.arange(len(x)) / rate
    basis = np.column_stack([np.sin(2 * np.pi * expected_hz * t), np.cos(2 * np.pi * expected_hz * t), np.ones_like(t)])
    fit, *_ = np.linalg.lstsq(basis, x, rcond=None)
    tone = basis[:, :2] @ fit[:2]
    residual = x - basis @ fit
    snr = 20 * np.log10(np.sqrt(np.mean(tone**2)) / (np.sqrt(np.mean(residual**2)) + 1e-9))
    return freq, 20 * np.log10(np.sqrt(np.mean(x**2)) / 32768 + 1e-12), snr


def sound_segments(x: np.ndarray, rate: int, threshold: int = 40, bridge_ms: float = 3) -> list[tuple[int, int]]:
    """[start, end) sample ranges where ``x`` is not silent, gaps shorter than ``bridge_ms`` bridged."""
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return []
    breaks = np.flatnonzero(np.diff(loud) > rate * bridge_ms / 1000)
    starts = [loud[0], *loud[breaks + 1]]
    ends = [*(loud[breaks] + 1), loud[-1] + 1]
    return list(zip((int(s) for s in starts), (int(e) for e in ends), strict=True))


def b64_pcm(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i2")


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class VoiceWorkletTests(SimpleTestCase):
    """The capture and playback worklets in Chromium, served from the static files with no server."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        sync_playwright = require_browser()
        cls.playwright = sync_playwright().start()
        cls.addClassCleanup(cls.playwright.stop)
        cls.browser = cls.playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
        )
        cls.addClassCleanup(cls.browser.close)
        cls.site = StaticSite()
        cls.addClassCleanup(cls.site.stop)

    def setUp(self) -> None:
        context = self.browser.new_context()
        self.addCleanup(context.close)
        self.page = context.new_page()
        self.page.set_default_timeout(30_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(self.site.base_url + "/")

    def tearDown(self) -> None:
        self.assertEqual(self.errors, [], "errors in the page")

    def capture(self, rate: int, freq: float, seconds: float = 1.0, amplitude: float = 0.5) -> dict[str, Any]:
        out = self.page.evaluate(
            CAPTURE_TONE_JS, {"rate": rate, "freq": freq, "amplitude": amplitude, "seconds": seconds, "targetRate": 16000}
        )
        out["samples"] = b64_pcm(out["pcm"])
        return out

    # -- capture: the context's rate → 16 kHz, 20 ms frames --------------------------
    def test_48k_becomes_640_byte_frames_of_16k_that_keep_the_tone(self) -> None:
        out = self.capture(48000, 440.0)
        self.assertEqual(set(out["sizes"]), {640})
        # One second at 16 kHz is 50 frames; the filter's look-ahead (1.5 ms) may hold back the last.
        self.assertIn(len(out["sizes"]), (49, 50))
        steady = out["samples"][640:]  # past the filter's start-up
        freq, level, snr = tone_analysis(steady, 16000, 440.0)
        self.assertAlmostEqual(freq, 440.0, delta=0.3)
        self.assertAlmostEqual(level, 20 * np.log10(0.5 / np.sqrt(2)), delta=0.1)
        self.assertGreater(snr, 70.0)
        # The level each frame reports for the meter is the frame's RMS (full scale 1.0).
        self.assertTrue(all(abs(r - 0.5 / np.sqrt(2)) < 0.005 for r in out["rms"][2:]), out["rms"][:5])

    def test_44k1_becomes_640_byte_frames_of_16k_that_keep_the_tone(self) -> None:
        out = self.capture(44100, 1000.0)
        self.assertEqual(set(out["sizes"]), {640})
        self.assertIn(len(out["sizes"]), (49, 50))
        freq, level, snr = tone_analysis(out["samples"][640:], 16000, 1000.0)
        self.assertAlmostEqual(freq, 1000.0, delta=0.3)
        self.assertAlmostEqual(level, 20 * np.log10(0.5 / np.sqrt(2)), delta=0.1)
        self.assertGreater(snr, 70.0)

    def test_what_16k_cannot_carry_does_not_fold_into_the_speech_band(self) -> None:
        # A 12 kHz whistle would alias to 4 kHz, right where speech is, without the low-pass.
        for rate in (48000, 44100):
            with self.subTest(rate=rate):
                out = self.capture(rate, 12000.0)
                level = 20 * np.log10(np.sqrt(np.mean(out["samples"][640:].astype(np.float64) ** 2)) / 32768 + 1e-12)
                self.assertLess(level, -75.0)

    def test_a_16k_context_is_passed_through(self) -> None:
        out = self.capture(16000, 440.0)
        self.assertEqual(set(out["sizes"]), {640})
        self.assertEqual(len(out["sizes"]), 50)
        freq, level, snr = tone_analysis(out["samples"][640:], 16000, 440.0)
        self.assertAlmostEqual(freq, 440.0, delta=0.3)
        self.assertAlmostEqual(level, 20 * np.log10(0.5 / np.sqrt(2)), delta=0.1)
        self.assertGreater(snr, 70.0)

    # -- playback: the jitter buffer ----------------------------------------------------
    def play(self, plan: list[dict[str, Any]], listen_ms: int, rate: int = 48000) -> tuple[np.ndarray, list[dict[str, Any]]]:
        self.assertEqual(self.page.evaluate(PLAYBACK_RIG_JS, {"rate": rate}), rate)
        self.page.evaluate("(plan) => window.rig.schedule(plan)", plan)
        self.page.wait_for_timeout(listen_ms)
        out = self.page.evaluate("() => window.rig.take()")
        self.page.evaluate("() => window.rig.ctx.close()")
        return b64_pcm(out["pcm"]), out["events"]

    @staticmethod
    def chunks(pcm: bytes, chunk_ms: float, rate: int, start_ms: float, spacing_ms: float) -> list[dict[str, Any]]:
        step = int(rate * chunk_ms / 1000) * 2
        parts = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        return [{"at": start_ms + i * spacing_ms, "pcm": base64.b64encode(p).decode()} for i, p in enumerate(parts)]

    def max_step(self, x: np.ndarray) -> int:
        return int(np.max(np.abs(np.diff(x.astype(np.int32)))))

    def test_late_chunks_leave_a_clean_gap_and_everything_is_played(self) -> None:
        # 24 kHz speech-rate audio in 20 ms chunks in real time, then the network stalls for 250 ms.
        # 523 Hz: the stall comes mid-wave (0.4 s is 209.2 cycles), where a hard stop would click.
        tone = sine_pcm(523, 900, 24000)
        plan = self.chunks(tone[: 24000 * 2 * 4 // 10], 20, 24000, 100, 20)  # 400 ms on time
        plan += self.chunks(tone[24000 * 2 * 4 // 10 :], 20, 24000, 100 + 400 + 250, 20)  # 500 ms after the stall
        plan[:0] = [{"at": 0, "post": {"type": "format", "sampleRate": 24000}}, {"at": 0, "post": {"type": "epoch"}}]
        played, events = self.play(plan, 2200)
        segments = sound_segments(played, 48000)
        self.assertEqual(len(segments), 2, segments)
        total = sum(e - s for s, e in segments)
        self.assertAlmostEqual(total / 48000, 0.9, delta=0.01)  # every sample sent was played
        gap_ms = (segments[1][0] - segments[0][1]) / 48
        self.assertGreater(gap_ms, 150)
        # A 523 Hz sine at half scale moves at most ~1,120 per sample at 48 kHz (a 2.5 ms fade adds ~140);
        # a stop mid-wave would jump up to ~16,000.
        self.assertLess(self.max_step(played), 1500)
        # Each time it runs dry it says how much of the server's audio (24 kHz samples) has been heard.
        self.assertEqual([e["type"] for e in events if e["type"] != "stats"], ["playing", "drained", "playing", "drained"])
        self.assertEqual([e["heard"] for e in events if e["type"] == "drained"], [9600, 21600])
        # The counter the page shows counts every sample played (the segments miss the faded last few).
        self.assertAlmostEqual(events[-1]["played"], int(0.9 * 48000), delta=2)

    def test_a_short_tail_is_played_without_waiting_for_more(self) -> None:
        # 30 ms is less than the 60 ms the buffer wants before it starts: it still plays, once it has waited.
        plan = [
            {"at": 0, "post": {"type": "format", "sampleRate": 16000}},
            {"at": 100, "pcm": base64.b64encode(sine_pcm(400, 30, 16000)).decode()},
        ]
        played, _ = self.play(plan, 600)
        segments = sound_segments(played, 48000)
        self.assertEqual(len(segments), 1, segments)
        self.assertAlmostEqual((segments[0][1] - segments[0][0]) / 48000, 0.03, delta=0.004)
        self.assertLess(self.max_step(played), 1200)

    def test_a_flush_stops_at_once_without_a_click_and_the_next_reply_plays(self) -> None:
        plan = [{"at": 0, "post": {"type": "format", "sampleRate": 24000}}]
        plan += self.chunks(sine_pcm(300, 3000, 24000), 100, 24000, 50, 0)  # 3 s at once, as a TTS may
        plan += [{"at": 650, "post": {"type": "flush"}}]
        plan += self.chunks(sine_pcm(300, 200, 24000), 100, 24000, 1000, 0)
        played, events = self.play(plan, 1600)
        segments = sound_segments(played, 48000)
        self.assertEqual(len(segments), 2, segments)
        first = (segments[0][1] - segments[0][0]) / 48000
        self.assertGreater(first, 0.45)
        self.assertLess(first, 0.75)  # cut ~0.6 s in, not 3 s
        self.assertAlmostEqual((segments[1][1] - segments[1][0]) / 48000, 0.2, delta=0.01)
        self.assertLess(self.max_step(played), 800)


SPOKEN = "Hello, I would like to check my order please."


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class VoicePageBrowserTests(BrowserTestCase):
    """The page served by a real Daphne, a fake microphone saying ``SPOKEN``, and a scripted ``/ws/voice/``."""

    @classmethod
    def setUpClass(cls) -> None:
        if E2E_ENABLED:
            cls.browser_args = fake_microphone_args(speech_wav(SPOKEN, lead_ms=600, tail_ms=3000))
        super().setUpClass()

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        self.problems: list[str] = []
        make_channel("voice", channel_type="voice", provider="browser", name="Browser voice")

    def tearDown(self) -> None:
        if os.environ.get("ROOMKIT_E2E_SERVER_LOG"):
            print(self.server.output())
        self.assertEqual(self.problems, [], "script errors or policy violations on the page")

    def new_page(self, viewport: dict[str, int] | None = None, **options: Any) -> Any:
        context = self.browser.new_context(
            viewport=viewport or {"width": 1100, "height": 800}, permissions=["microphone"], **options
        )
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        # Policy violations (a worklet refused by the CSP, say) are reported as console errors.
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        return page

    def start_call(self, page: Any, fake: FakeVoiceServer, *, query: str = "", name: str = "Ann") -> FakeVoiceCall:
        page.goto(f"{self.server.base_url}/voice/{query}")
        page.fill("#display-name", name)
        page.click("#call")
        pump_until(page, lambda: fake.calls, message="the page opened /ws/voice/")
        pump_until(page, lambda: page.evaluate("() => window.roomkitVoice.state") == "listening", message="listening")
        return fake.calls[-1]

    def state_shown(self, page: Any) -> tuple[str, str]:
        return tuple(
            page.evaluate(
                "() => [document.getElementById('state').dataset.state, document.getElementById('state-label').textContent]"
            )
        )

    def bubbles(self, page: Any) -> list[dict[str, Any]]:
        return page.evaluate(
            """() => [...document.querySelectorAll('#messages .msg')].map((m) => ({
                mine: m.classList.contains('mine'),
                partial: m.classList.contains('partial'),
                interrupted: m.classList.contains('interrupted'),
                seq: m.dataset.seq ? Number(m.dataset.seq) : null,
                name: m.querySelector('.meta .name')?.textContent ?? null,
                text: m.querySelector('.text').textContent,
                foot: m.querySelector('.foot').textContent,
            }))"""
        )

    def notices(self, page: Any) -> list[str]:
        return page.evaluate("() => [...document.querySelectorAll('#messages .notice')].map((n) => n.textContent)")

    def banner(self, page: Any) -> str | None:
        return page.evaluate("() => { const b = document.getElementById('banner'); return b.hidden ? null : b.textContent; }")

    def played_seconds(self, page: Any) -> float:
        s = voice_stats(page)
        return s["playedSamples"] / s["playbackRate"] if s["playbackRate"] else 0.0

    # -- scenarios -------------------------------------------------------------
    def test_a_call_sends_the_microphone_shows_the_conversation_and_plays_the_agent(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        call = self.start_call(page, fake)
        # The token is a session for this page's voice channel, in the caller's name.
        claims = chat_token_verify(call.token)
        self.assertEqual((claims.channel_id, claims.display_name), ("voice", "Ann"))
        self.assertEqual(self.state_shown(page), ("listening", "Listening"))
        self.assertEqual(page.inner_text("#call-label"), "Hang up")

        # The microphone: 20 ms frames of 16 kHz 16-bit PCM, the speech in them.
        pump_until(page, lambda: len(call.audio) >= 150, timeout=20, message="3 s of microphone audio")
        self.assertEqual({len(a) for a in call.audio}, {640})
        frames = call.captured()[: 150 * 320].reshape(150, 320).astype(np.float64)
        loudest = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)).max() / 32768)
        self.assertGreater(loudest, -35.0, "the microphone's frames carry the speech")
        stats = voice_stats(page)
        self.assertEqual((stats["captureMode"], stats["captureRate"]), ("context", 16000))
        self.assertGreater(float(page.get_attribute("#meter", "aria-valuenow") or 0) + stats["framesSent"], 0)

        # The caller's words, as they are recognised and then final.
        call.send({"type": "partial_transcript", "text": "hello I would"})
        pump_until(page, lambda: self.bubbles(page), message="a partial transcript")
        self.assertEqual(
            self.bubbles(page),
            [
                {
                    "mine": True,
                    "partial": True,
                    "interrupted": False,
                    "seq": None,
                    "name": None,
                    "text": "hello I would",
                    "foot": "",
                }
            ],
        )
        call.send({"type": "transcript", "text": "Hello, I would like to check my order.", "event_id": "ev-1", "seq": 3})
        call.send({"type": "state", "state": "thinking"})
        pump_until(page, lambda: self.state_shown(page) == ("thinking", "Thinking"), message="thinking")
        # The agent's reply, sentence by sentence, in one bubble.
        call.send({"type": "agent_text", "text": "Sure.", "agent_id": "triage"})
        call.send({"type": "agent_text", "text": "What is the order number?", "agent_id": "triage"})
        call.send({"type": "state", "state": "speaking"})
        call.send({"type": "playback_start"})
        call.send_audio(sine_pcm(440, 800, 24000))  # faster than real time, as the server sends it
        page.wait_for_timeout(150)
        self.assertEqual(self.state_shown(page), ("speaking", "Speaking"))
        self.assertNotIn("playback_done", call.types())
        self.assertEqual(
            self.bubbles(page),
            [
                {
                    "mine": True,
                    "partial": False,
                    "interrupted": False,
                    "seq": 3,
                    "name": None,
                    "text": "Hello, I would like to check my order.",
                    "foot": "",
                },
                {
                    "mine": False,
                    "partial": False,
                    "interrupted": False,
                    "seq": None,
                    "name": "Triage",
                    "text": "Sure. What is the order number?",
                    "foot": "",
                },
            ],
        )

        # The agent's speech is played, all of it, and the server hears how much has been.
        pump_until(page, lambda: "playback_done" in call.types(), timeout=10, message="playback_done")
        self.assertEqual(call.frames[-1], {"type": "playback_done", "samples": 24000 * 8 // 10})
        stats = voice_stats(page)
        self.assertEqual(stats["serverRate"], 24000)
        self.assertEqual(stats["samplesReceived"], 24000 * 8 // 10)
        self.assertAlmostEqual(stats["playedSamples"] / stats["playbackRate"], 0.8, delta=0.01)
        call.send({"type": "playback_stop", "reason": "done"})
        call.send({"type": "state", "state": "listening"})
        pump_until(page, lambda: self.state_shown(page) == ("listening", "Listening"), message="listening again")

        # The server may end its playback by its own clock while the caller still hears the last of it:
        # the tail plays out (no flush), the page shows the agent speaking until then, and reports nothing more.
        call.send({"type": "playback_start"})
        call.send({"type": "state", "state": "speaking"})
        call.send_audio(sine_pcm(440, 600, 24000))
        call.send({"type": "playback_stop", "reason": "done"})
        call.send({"type": "state", "state": "listening"})
        page.wait_for_timeout(200)
        self.assertEqual(self.state_shown(page), ("speaking", "Speaking"))
        pump_until(page, lambda: self.state_shown(page) == ("listening", "Listening"), message="the tail played")
        self.assertAlmostEqual(self.played_seconds(page), 1.4, delta=0.02)
        page.wait_for_timeout(200)
        self.assertEqual(call.types().count("playback_done"), 1)

        call.send({"type": "dtmf", "digit": "5"})
        pump_until(page, lambda: "Keypad: 5" in self.notices(page), message="the key press")

        # Hang up: the server is told, the socket closes, the microphone stops.
        page.click("#call")
        pump_until(page, lambda: call.closed, message="the socket closed")
        self.assertEqual(call.types()[-1], "hangup")
        self.assertEqual(call.closed[0], 1000)
        self.assertEqual(page.inner_text("#call-label"), "Start call")
        self.assertEqual(self.state_shown(page), ("ended", "Call ended"))
        self.assertRegex(self.notices(page)[-1], r"^Call ended · 0:\d\d$")
        sent = len(call.audio)
        page.wait_for_timeout(300)
        self.assertEqual(len(call.audio), sent)
        self.assertEqual(page.evaluate("() => document.getElementById('meter').getAttribute('aria-valuenow')"), "0")

    def test_barge_in_and_playback_stop_cut_the_agent_off_at_once(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        call = self.start_call(page, fake)
        # What the server sends when the caller talks over the agent; and when something else cuts it off.
        barge_in = [
            {"type": "barge_in"},
            {"type": "playback_stop", "reason": "barge_in"},
            {"type": "state", "state": "listening"},
        ]
        cut = [{"type": "playback_stop", "reason": "interrupted"}, {"type": "state", "state": "listening"}]
        for stops in (barge_in, cut):
            with self.subTest(stop=stops[0]["type"]):
                before = self.played_seconds(page)
                call.send({"type": "agent_text", "text": f"A long answer before {stops[0]['type']}.", "agent_id": "specialist"})
                call.send({"type": "state", "state": "speaking"})
                call.send({"type": "playback_start"})
                call.send_audio(sine_pcm(300, 3000, 24000))
                pump_until(page, lambda before=before: self.played_seconds(page) - before > 0.3, message="the agent is heard")
                for stop in stops:
                    call.send(stop)
                at_cut = self.played_seconds(page)
                page.wait_for_timeout(400)
                # At most what was already on its way to the speaker after the cut.
                self.assertLess(self.played_seconds(page) - at_cut, 0.08)
                self.assertEqual(self.state_shown(page), ("listening", "Listening"))
                self.assertLess(self.played_seconds(page) - before, 1.0)
                last = self.bubbles(page)[-1]
                self.assertEqual((last["interrupted"], last["foot"]), (True, "Interrupted"))
                self.assertNotIn("playback_done", call.types())
                call.send({"type": "transcript", "text": "Wait, stop.", "event_id": "e", "seq": 10})
        # The next reply plays in full and is reported once.
        call.send({"type": "agent_text", "text": "Of course.", "agent_id": "specialist"})
        call.send({"type": "playback_start"})
        before = self.played_seconds(page)
        call.send_audio(sine_pcm(300, 400, 24000))
        pump_until(page, lambda: "playback_done" in call.types(), message="playback_done")
        self.assertEqual(call.frames[-1], {"type": "playback_done", "samples": 9600})
        self.assertAlmostEqual(self.played_seconds(page) - before, 0.4, delta=0.01)
        self.assertEqual(self.bubbles(page)[-1]["text"], "Of course.")
        self.assertFalse(self.bubbles(page)[-1]["interrupted"])

    def test_each_reply_keeps_its_bubble_whatever_arrives_between_its_sentences(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        call = self.start_call(page, fake)
        # A reply's first sentence can reach the page before the transcript of the turn it answers,
        # and a barge-in can cut it between two sentences: its sentences still share one bubble.
        call.send({"type": "agent_text", "text": "It is noon.", "agent_id": "specialist", "reply": "stream:g1"})
        call.send({"type": "transcript", "text": "What time is it?", "event_id": "e1", "seq": 1})
        call.send({"type": "barge_in"})
        call.send({"type": "agent_text", "text": "Anything else?", "agent_id": "specialist", "reply": "stream:g1"})
        call.send({"type": "agent_text", "text": "Someone joined.", "agent_id": "ops", "reply": "e2"})
        call.send({"type": "transcript", "text": "No thanks.", "event_id": "e3", "seq": 3})
        call.send({"type": "agent_text", "text": "Goodbye.", "agent_id": "specialist", "reply": "stream:g2"})
        pump_until(page, lambda: len(self.bubbles(page)) >= 5, message="five bubbles")
        page.wait_for_timeout(200)
        shown = [(b["mine"], b["text"], b["interrupted"]) for b in self.bubbles(page)]
        self.assertEqual(
            shown,
            [
                (False, "It is noon. Anything else?", True),
                (True, "What time is it?", False),
                (False, "Someone joined.", False),
                (True, "No thanks.", False),
                (False, "Goodbye.", False),
            ],
        )

    def test_a_session_closed_with_4401_says_it_has_expired(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=lambda call: call.close(4401, "token expired"))
        page.goto(f"{self.server.base_url}/voice/")
        page.click("#call")
        pump_until(page, lambda: self.banner(page), message="an error is shown")
        self.assertIn("session has expired", self.banner(page))
        self.assertEqual(len(fake.calls), 1)
        self.assertEqual(page.inner_text("#call-label"), "Start call")
        self.assertEqual(self.state_shown(page), ("idle", "Ready"))
        self.assertFalse(page.evaluate("() => document.getElementById('call').disabled"))
        # It can call again at once.
        fake.on_connect = greet
        page.click("#call")
        pump_until(page, lambda: voice_stats(page)["state"] == "listening", message="the second call")
        self.assertIsNone(self.banner(page))

    def test_a_lost_connection_ends_the_call_and_says_so(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        for code, said in ((1011, "The server could not continue the call."), (4000, "The connection was lost (4000).")):
            with self.subTest(code=code):
                call = self.start_call(page, fake)
                call.close(code, "gone")
                pump_until(page, lambda: self.banner(page), message="an error is shown")
                self.assertIn(said, self.banner(page))
                self.assertEqual(self.state_shown(page), ("ended", "Call ended"))
                self.assertEqual(page.inner_text("#call-label"), "Start call")

    def test_a_refused_session_is_shown_and_no_socket_is_opened(self) -> None:
        # A line of its own: switched off after the page loaded, so the session endpoint refuses it (404).
        make_channel("line-off", channel_type="voice", provider="browser", name="Soon off")
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        page.goto(f"{self.server.base_url}/voice/?channel=line-off")
        Channel.objects.filter(pk="line-off").update(enabled=False)
        page.wait_for_timeout(CHANNEL_CACHE_TTL * 1000 + 100)  # the server's channel cache forgets it
        page.click("#call")
        pump_until(page, lambda: self.banner(page), message="an error is shown")
        self.assertIn("Could not start the call: channel 'line-off' is disabled.", self.banner(page))
        self.assertEqual(fake.calls, [])
        self.assertEqual(page.inner_text("#call-label"), "Start call")
        self.assertEqual(self.state_shown(page), ("idle", "Ready"))
        self.problems.remove("Failed to load resource: the server responded with a status of 404 (Not Found)")

    def test_the_capture_worklet_resamples_when_the_context_runs_at_the_devices_rate(self) -> None:
        page = self.new_page()
        fake = FakeVoiceServer(page, on_connect=greet)
        call = self.start_call(page, fake, query="?capture=native")
        pump_until(page, lambda: len(call.audio) >= 100, timeout=20, message="2 s of microphone audio")
        stats = voice_stats(page)
        self.assertEqual(stats["captureMode"], "worklet")
        self.assertIn(stats["captureRate"], (44100, 48000))
        self.assertEqual({len(a) for a in call.audio}, {640})
        self.assertEqual(list(stats["frameSizes"]), ["640"])

    def test_the_layout_fits_a_phone_and_a_desktop(self) -> None:
        for label, viewport, extra in (
            (
                "phone",
                {"width": 360, "height": 740},
                {"is_mobile": True, "has_touch": True, "device_scale_factor": 2, "color_scheme": "dark"},
            ),
            ("desktop", {"width": 1280, "height": 800}, {}),
        ):
            with self.subTest(label):
                page = self.new_page(viewport, **extra)
                fake = FakeVoiceServer(page, on_connect=greet)
                page.goto(f"{self.server.base_url}/voice/")
                self.assert_fits(page, viewport, label)
                self.screenshot(page, f"{label}-idle")
                call = self.start_call(page, fake)
                for i in range(12):
                    call.send(
                        {
                            "type": "transcript",
                            "text": f"Question number {i} with enough words to wrap on a phone.",
                            "event_id": f"e{i}",
                            "seq": i + 1,
                        }
                    )
                    call.send(
                        {
                            "type": "agent_text",
                            "text": f"Answer {i}: a longer reply that also wraps over a few lines.",
                            "agent_id": "triage",
                        }
                    )
                pump_until(page, lambda page=page: len(self.bubbles(page)) == 24, message="the conversation")
                self.assert_fits(page, viewport, label)
                # The newest line is in view: the log follows the conversation.
                self.assertTrue(
                    page.evaluate(
                        "() => { const l = document.getElementById('log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 80; }"
                    )
                )
                self.screenshot(page, f"{label}-call")

    def screenshot(self, page: Any, name: str) -> None:
        """A picture of the page for a person to look at, when ``ROOMKIT_E2E_SCREENSHOTS`` names a folder."""
        if os.environ.get("ROOMKIT_E2E_SCREENSHOTS"):
            page.screenshot(path=os.path.join(os.environ["ROOMKIT_E2E_SCREENSHOTS"], f"voice-{name}.png"))

    def assert_fits(self, page: Any, viewport: dict[str, int], label: str) -> None:
        box = page.evaluate(
            """() => {
                const r = (id) => { const b = document.getElementById(id).getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
                return {scrollWidth: document.documentElement.scrollWidth, call: r('call'), callbar: r('callbar'), state: r('state'), meter: r('meter')};
            }"""
        )
        self.assertLessEqual(box["scrollWidth"], viewport["width"], f"{label}: nothing sticks out sideways")
        left, top, right, bottom = box["call"]
        self.assertTrue(0 <= left and right <= viewport["width"] and bottom <= viewport["height"], f"{label}: {box}")
        self.assertGreaterEqual(bottom - top, 44, f"{label}: the button is big enough to tap")
        self.assertAlmostEqual(box["callbar"][3], viewport["height"], delta=1, msg=f"{label}: the call bar sits at the bottom")
        for part in ("state", "meter"):
            self.assertLessEqual(box[part][2], box["call"][0], f"{label}: {part} beside the button, not under it")

    def test_an_unknown_channel_shows_that_the_line_is_unavailable(self) -> None:
        page = self.new_page()
        response = page.goto(f"{self.server.base_url}/voice/?channel=nope")
        self.assertEqual(response.status, 404)
        self.problems.remove("Failed to load resource: the server responded with a status of 404 (Not Found)")
        self.assertIn("isn't available", page.inner_text("#unavailable"))
        self.assertEqual(page.locator("#call").count(), 0)


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class VoiceMicrophoneDeniedTests(BrowserTestCase):
    """A browser that refuses the microphone (no fake permission prompt, no grant)."""

    browser_args = ("--use-fake-device-for-media-stream",)

    def test_a_refused_microphone_is_explained_and_no_session_is_started(self) -> None:
        make_channel("voice", channel_type="voice", provider="browser", name="Browser voice")
        context = self.browser.new_context()
        self.addCleanup(context.close)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{self.server.base_url}/voice/")
        page.click("#call")
        page.wait_for_function("() => !document.getElementById('banner').hidden")
        self.assertIn("Microphone access was denied", page.inner_text("#banner"))
        self.assertEqual(page.inner_text("#call-label"), "Start call")
        self.assertEqual([u for u in requests if "/api/v1/chat/sessions" in u], [])
        self.assertEqual(problems, [])


ASKED = "Hello, what time is it?"
# Said while the agent is still answering (the scripted answer lasts ~20 s): a barge-in.
INTERRUPTION = "Wait, stop. I have another question."


def voice_consumer_present() -> bool:
    """Whether the real ``/ws/voice/`` consumer is in this tree and routed."""
    from roomkit_project.asgi import websocket_urlpatterns

    return importlib.util.find_spec("voice.consumer") is not None and any(
        str(p.pattern) == "ws/voice/" for p in websocket_urlpatterns
    )


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class VoiceCallEndToEndTests(BrowserTestCase):
    """The page against the real consumer: espeak-ng asks the demo's scripted agent the time, out loud.

    Whisper hears the fake microphone, the scripted agent answers, the server's
    TTS speaks it and the page plays it; the caller talks over the answer and
    the server's barge-in cuts it off; the next answer plays to the end. Nothing
    is faked past the microphone.
    """

    server_env = {"ROOMKIT_TASK_MODE": "thread", "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}

    @classmethod
    def setUpClass(cls) -> None:
        if not voice_consumer_present():
            raise unittest.SkipTest(
                "the /ws/voice/ consumer (voice/consumer.py, routed in roomkit_project/asgi.py) is not in this tree yet"
            )
        if E2E_ENABLED:
            # Silence first: the call is up (session, socket, the speech engines) before the caller speaks.
            cls.browser_args = fake_microphone_args(speech_wav(ASKED, INTERRUPTION, lead_ms=2000, gap_ms=8000, tail_ms=4000))
        super().setUpClass()

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        with mock.patch.dict(os.environ, {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}):
            call_command("seed_demo", stdout=io.StringIO())
        self.warm_up()

    def tearDown(self) -> None:
        if os.environ.get("ROOMKIT_E2E_SERVER_LOG"):
            print(self.server.output())

    def warm_up(self, timeout: float = 240.0) -> None:
        """One call from here first, so the server has loaded its speech models before the page's call."""
        session = httpx.post(f"{self.server.base_url}/api/v1/chat/sessions", json={"channel_id": "voice"}, timeout=15)
        self.assertEqual(session.status_code, 201, session.text)

        async def call() -> None:
            url = self.server.base_url.replace("http://", "ws://") + f"/ws/voice/?token={session.json()['token']}"
            async with websockets.connect(url, origin=self.server.base_url, open_timeout=30) as ws:
                while True:
                    frame = await asyncio.wait_for(ws.recv(), timeout)
                    if isinstance(frame, str) and json.loads(frame).get("type") == "audio_format":
                        break
                await ws.send(json.dumps({"type": "hangup"}))

        off_loop(asyncio.run, call())

    @staticmethod
    def second_answer_heard(page: Any) -> bool:
        s = voice_stats(page)
        received = s["playbackReceived"]
        return s["state"] == "listening" and received > 3 * s["serverRate"] and s["playbackHeard"] == received

    def test_a_spoken_question_is_answered_out_loud_and_the_caller_can_cut_in(self) -> None:
        context = self.browser.new_context(viewport={"width": 1100, "height": 800}, permissions=["microphone"])
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        mine = page.locator("#messages .msg.mine:not(.partial)")
        theirs = page.locator("#messages .msg.theirs")

        page.goto(f"{self.server.base_url}/voice/")
        page.fill("#display-name", "Ann")
        page.click("#call")
        # The question, as Whisper heard it, and the answer shown and heard.
        mine.first.wait_for(timeout=90_000)
        asked = mine.first.locator(".text").text_content() or ""
        self.assertIn("time", asked.lower())
        theirs.first.wait_for(timeout=60_000)
        self.assertIn(theirs.first.locator(".meta .name").text_content(), ("Triage", "Specialist"))
        self.assertTrue((theirs.first.locator(".text").text_content() or "").strip())
        wait_until(lambda: voice_stats(page)["playedSamples"] > voice_stats(page)["playbackRate"], message="a second of it")
        self.assertEqual(voice_stats(page)["state"], "speaking")

        # The caller talks over the answer: the server's barge-in stops it at once.
        wait_until(lambda: voice_stats(page)["flushes"] >= 1, timeout=45, message="a barge-in")
        cut = voice_stats(page)
        self.assertEqual(theirs.first.locator(".foot").text_content(), "Interrupted")
        self.assertLess(cut["playedSamples"] / cut["playbackRate"], cut["samplesReceived"] / cut["serverRate"] - 1.0)
        page.wait_for_timeout(300)
        self.assertLess(voice_stats(page)["playedSamples"] - cut["playedSamples"], 0.08 * cut["playbackRate"])

        # What the caller said instead is heard, and the next answer is played out to the end. The
        # interruption is two sentences: under load the pause between them may end a turn, so the caller's
        # words after the first question are read together (and each of their turns may be answered).
        def said_after_the_question() -> str:
            return " ".join(mine.nth(i).locator(".text").text_content() or "" for i in range(1, mine.count())).lower()

        wait_until(lambda: "question" in said_after_the_question(), timeout=60, message="the second question")
        # (The server ends a fully sent playback by its own clock, a little before the caller's buffer runs
        # dry, so the page has nothing to report with playback_done: it played every sample, that is all.)
        theirs.nth(1).wait_for(timeout=60_000)
        wait_until(lambda: self.second_answer_heard(page), timeout=90, message="the last answer played out")
        # An answer per turn at most (a turn that comes while the agent is still answering steers that answer).
        bubbles = {"caller": mine.all_text_contents(), "agents": theirs.all_text_contents()}
        self.assertTrue(2 <= theirs.count() <= mine.count(), bubbles)
        self.assertEqual(theirs.last.locator(".foot").text_content(), "")
        stats = voice_stats(page)
        self.assertEqual(set(stats["frameSizes"]), {"640"})
        self.assertEqual(stats["captureMode"], "context")

        # The caller's words are the room's events, with the seq the page shows.
        for i in range(mine.count()):
            said = mine.nth(i).locator(".text").text_content() or ""
            seq = int(mine.nth(i).get_attribute("data-seq"))
            self.assertEqual(RoomEvent.objects.get(source_channel_id="voice", seq=seq).content["body"], said)
        self.assertEqual(mine.first.locator(".text").text_content(), asked)
        page.click("#call")
        page.wait_for_function("() => window.roomkitVoice.state === 'ended'")
        self.assertEqual(problems, [])
