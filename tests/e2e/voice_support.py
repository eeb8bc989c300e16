"""Browser tests of the voice page: a fake microphone, a scripted /ws/voice/, the worklets on their own.

- The microphone: Chromium's fake capture device playing a WAV made here from
  espeak-ng speech (``fake_microphone_args``).
- The socket: ``FakeVoiceServer`` answers ``/ws/voice/`` inside the browser
  (Playwright's WebSocket routing) with the contract's frames, as the test
  scripts them, and records what the page sent. The real consumer is tested
  with the real socket (``VoiceCallEndToEndTests``).
- The worklets alone: ``StaticSite`` serves this project's static files to
  a blank page, with no Django server at all.
"""

from __future__ import annotations

import json
import mimetypes
import re
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from django.contrib.staticfiles import finders

from tests.voice.audio_samples import silence, speech

# A secure context (127.0.0.1 is one) is needed for AudioWorklet; the modules load as scripts under this policy.
STATIC_PAGE_POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src data:; object-src 'none'; base-uri 'none'"


def fake_microphone_args(wav: Path) -> tuple[str, ...]:
    """Chromium flags: grant the microphone without asking; its audio is ``wav``, played once, then silence."""
    return (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    )


def write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def speech_wav(
    *utterances: str, sample_rate: int = 48000, lead_ms: float = 600, gap_ms: float = 8000, tail_ms: float = 3000
) -> Path:
    """``utterances`` spoken by espeak-ng, with silence before, between and after, as a mono WAV in a temporary file.

    Raises ``unittest.SkipTest`` when espeak-ng is missing (``tests.voice.audio_samples``).
    """
    parts = [silence(lead_ms, sample_rate)]
    for i, text in enumerate(utterances):
        if i:
            parts.append(silence(gap_ms, sample_rate))
        parts.append(speech(text, sample_rate))
    parts.append(silence(tail_ms, sample_rate))
    path = Path(tempfile.mkdtemp(prefix="rk-voice-mic-")) / "speech.wav"
    return write_wav(path, np.concatenate(parts), sample_rate)


def sine_pcm(freq: float, ms: float, sample_rate: int, amplitude: float = 0.5) -> bytes:
    """A sine as 16-bit little-endian PCM (the agent's "speech" a scripted server sends)."""
    t = np.arange(int(sample_rate * ms / 1000)) / sample_rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def pump_until(page: Any, check: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    """Like ``wait_until``, but waits inside Playwright, so the routed socket's handlers run meanwhile."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        page.wait_for_timeout(40)
    raise AssertionError(f"timed out after {timeout}s: {message or check}; last value: {last!r}")


def voice_stats(page: Any) -> dict[str, Any]:
    """The page's counters (``window.roomkitVoice``)."""
    return page.evaluate("() => JSON.parse(JSON.stringify(window.roomkitVoice))")


class FakeVoiceCall:
    """One /ws/voice/ connection the page opened: what it sent, and a way to answer."""

    def __init__(self, route: Any) -> None:
        self.route = route
        self.url = route.url
        self.token = parse_qs(urlsplit(route.url).query).get("token", [""])[0]
        self.audio: list[bytes] = []
        self.frames: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str | None] | None = None
        route.on_message(self._on_message)
        route.on_close(self._on_close)

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.audio.append(message)
        else:
            self.frames.append(json.loads(message))

    def _on_close(self, code: int | None, reason: str | None) -> None:
        self.closed = (code, reason)

    def send(self, frame: dict[str, Any]) -> None:
        self.route.send(json.dumps(frame))

    def send_audio(self, pcm: bytes, chunk_ms: float = 40, sample_rate: int = 24000) -> None:
        """``pcm`` in chunks of ``chunk_ms``, all at once (faster than real time, as a TTS may)."""
        step = int(sample_rate * chunk_ms / 1000) * 2
        for i in range(0, len(pcm), step):
            self.route.send(pcm[i : i + step])

    def close(self, code: int, reason: str = "") -> None:
        self.route.close(code=code, reason=reason)

    def types(self) -> list[str]:
        return [f.get("type") for f in self.frames]

    def captured(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.audio), dtype="<i2")


class FakeVoiceServer:
    """``/ws/voice/`` answered inside the browser: ``on_connect(call)`` speaks first (``audio_format`` …)."""

    def __init__(self, page: Any, on_connect: Callable[[FakeVoiceCall], None] | None = None) -> None:
        self.calls: list[FakeVoiceCall] = []
        self.on_connect = on_connect
        page.route_web_socket(re.compile(r"/ws/voice/"), self._connected)

    def _connected(self, route: Any) -> None:
        call = FakeVoiceCall(route)
        self.calls.append(call)
        if self.on_connect:
            self.on_connect(call)


def greet(call: FakeVoiceCall, sample_rate: int = 24000) -> None:
    """What the contract's server says first."""
    call.send({"type": "audio_format", "encoding": "pcm_s16le", "sample_rate": sample_rate, "channels": 1})
    call.send({"type": "state", "state": "listening"})


class StaticSite:
    """This project's static files, and a blank page under a strict policy, on a local port (no Django server).

    A plain HTTP server in a thread of the test process: Chromium fetches
    AudioWorklet modules itself, past Playwright's request routing.
    """

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StaticHandler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="voice-static", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _StaticHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        path = urlsplit(self.path).path
        if path == "/":
            self._answer(
                200, "text/html", b'<!doctype html><link rel="icon" href="data:,"><title>worklets</title>', STATIC_PAGE_POLICY
            )
            return
        found = finders.find(path.removeprefix("/static/")) if path.startswith("/static/") else None
        if not found:
            self._answer(404, "text/plain", b"not found")
            return
        kind = "text/javascript" if path.endswith(".js") else mimetypes.guess_type(path)[0] or "application/octet-stream"
        self._answer(200, kind, Path(found).read_bytes())

    def _answer(self, status: int, kind: str, body: bytes, policy: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if policy:
            self.send_header("Content-Security-Policy", policy)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# Runs in the page: a tone through the capture worklet in an OfflineAudioContext; every frame it posted.
CAPTURE_TONE_JS = """
async ({rate, freq, amplitude, seconds, targetRate}) => {
  const ctx = new OfflineAudioContext(1, Math.round(rate * seconds), rate);
  await ctx.audioWorklet.addModule("/static/voice/capture-worklet.js");
  const osc = new OscillatorNode(ctx, {frequency: freq});
  const gain = new GainNode(ctx, {gain: amplitude});
  const node = new AudioWorkletNode(ctx, "roomkit-capture", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: {targetRate, frameMs: 20},
  });
  const frames = [];
  node.port.onmessage = (e) => frames.push(e.data);
  osc.connect(gain).connect(node).connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  // The last frames' messages may still be on their way from the rendering thread.
  for (let seen = -1; seen !== frames.length; ) {
    seen = frames.length;
    await new Promise((r) => setTimeout(r, 150));
  }
  const bytes = new Uint8Array(frames.reduce((n, f) => n + f.pcm.byteLength, 0));
  let at = 0;
  for (const f of frames) { bytes.set(new Uint8Array(f.pcm), at); at += f.pcm.byteLength; }
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return {sizes: frames.map((f) => f.pcm.byteLength), rms: frames.map((f) => f.rms), pcm: btoa(binary)};
}
"""

# Runs in the page: the playback worklet in a real-time context, its output recorded
# through the capture worklet at the context's own rate (exactly what was played).
PLAYBACK_RIG_JS = """
async ({rate}) => {
  const ctx = new AudioContext({sampleRate: rate});
  await ctx.audioWorklet.addModule("/static/voice/capture-worklet.js");
  await ctx.audioWorklet.addModule("/static/voice/playback-worklet.js");
  const play = new AudioWorkletNode(ctx, "roomkit-playback", {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: {prebufferMs: 60},
  });
  const rec = new AudioWorkletNode(ctx, "roomkit-capture", {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: {targetRate: rate, frameMs: 10},
  });
  const rig = {ctx, play, frames: [], events: [], t0: 0};
  rec.port.onmessage = (e) => rig.frames.push(new Int16Array(e.data.pcm));
  play.port.onmessage = (e) => rig.events.push({...e.data, at: rig.frames.length});
  play.connect(rec).connect(ctx.destination);
  await ctx.resume();
  window.rig = rig;
  rig.send = (b64) => {
    const s = atob(b64);
    const u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    play.port.postMessage({type: "pcm", pcm: u.buffer}, [u.buffer]);
  };
  // [{at: ms from now, pcm: base64} | {at, post: {type: "flush"|"epoch"|"format", …}}]:
  // a network's timing, kept by the page's clock.
  rig.schedule = (plan) => {
    for (const step of plan) setTimeout(() => (step.pcm ? rig.send(step.pcm) : play.port.postMessage(step.post)), step.at);
  };
  rig.take = () => {
    const n = rig.frames.reduce((a, f) => a + f.length, 0);
    const all = new Int16Array(n);
    let at = 0;
    for (const f of rig.frames) { all.set(f, at); at += f.length; }
    const bytes = new Uint8Array(all.buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return {pcm: btoa(binary), events: rig.events};
  };
  return ctx.sampleRate;
}
"""
