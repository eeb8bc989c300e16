"""Deepgram streaming speech-to-text over its WebSocket (``/v1/listen``).

The protocol as Deepgram documents it: the handshake carries the audio
format in the query string (``encoding=linear16&sample_rate=…&channels=1``)
and ``Authorization: Token <key>``; the client sends binary audio frames;
the server sends JSON ``Results`` messages, interim (``is_final: false``)
and final per segment; the client sends ``{"type": "CloseStream"}`` when the
audio ends, and the server answers with the last results and a ``Metadata``
message, then closes. A rejected handshake is an HTTP status; a failure
mid-stream is a close frame (1008: the audio was not what was announced;
1011: Deepgram's side failed or heard nothing for ~10 s).
"""

from __future__ import annotations

import json
import time
from typing import Any, Self
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from voice.speech.base import PartialTranscript, SpeechError, Transcript
from voice.speech.cloud import status_error
from voice.speech.pcm import SAMPLE_WIDTH

_FEED_CHUNK_MS = 250  # how ``transcribe`` slices a whole utterance, within Deepgram's advice (20–250 ms)


class DeepgramSTT:
    """Streaming recognition by Deepgram; ``transcribe`` streams a whole utterance through one socket.

    Safe from many threads: every utterance opens its own WebSocket. A stream
    must be fed at least every ~10 s (silence counts), or Deepgram closes it.
    """

    name = "deepgram"
    sample_rate = 16000
    streaming = True

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "wss://api.deepgram.com",
        model: str = "nova-3",
        language: str | None = "en",
        interim_results: bool = True,
        smart_format: bool = True,
        options: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.model = model
        self.language = language
        self._api_key = api_key
        self._base = _websocket_base(base_url)
        self._query: dict[str, Any] = {
            "model": model,
            "interim_results": _flag(interim_results),
            "smart_format": _flag(smart_format),
        }
        if language:
            self._query["language"] = language
        self._query.update(options or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"DeepgramSTT(model={self.model!r}, base_url={self._base!r})"

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        step = sample_rate * SAMPLE_WIDTH * _FEED_CHUNK_MS // 1000
        with self.open_stream(sample_rate) as stream:
            for start in range(0, len(pcm), step):
                stream.feed(pcm[start : start + step])
            return stream.finish()

    def open_stream(self, sample_rate: int) -> DeepgramStream:
        query = {"encoding": "linear16", "sample_rate": sample_rate, "channels": 1, **self._query}
        url = f"{self._base}/v1/listen?{urlencode(query)}"
        try:
            socket = connect(
                url,
                additional_headers={"Authorization": f"Token {self._api_key}"},
                open_timeout=self.timeout,
                close_timeout=self.timeout,
                # PCM hardly compresses: deflate would cost CPU for nothing.
                compression=None,
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode(errors="replace")
            raise status_error("deepgram", response.status_code, body, response.headers) from exc
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise SpeechError(f"deepgram connection failed: {type(exc).__name__}: {exc}", retryable=True) from exc
        return DeepgramStream(socket, sample_rate, self.language, self.timeout)


class DeepgramStream:
    """One utterance on its own WebSocket; see ``SttStream``."""

    def __init__(self, socket: ClientConnection, sample_rate: int, language: str | None, timeout: float) -> None:
        self._socket: ClientConnection | None = socket
        self._sample_rate = sample_rate
        self._language = language
        self._timeout = timeout
        self._fed_bytes = 0
        self._finals: list[str] = []
        self._confidences: list[tuple[float, float]] = []  # (confidence, seconds of audio) per final segment
        self._interim = ""
        self._last: PartialTranscript | None = None

    def feed(self, pcm: bytes) -> list[PartialTranscript]:
        socket = self._require_socket()
        self._fed_bytes += len(pcm)
        try:
            socket.send(pcm)
            partials = []
            while True:
                try:
                    message = socket.recv(timeout=0)
                except TimeoutError:
                    return partials
                partials.extend(self._handle(message))
        except ConnectionClosed as exc:
            self.close()
            raise _closed_error(exc) from exc

    def finish(self) -> Transcript:
        socket = self._require_socket()
        deadline = time.monotonic() + self._timeout
        try:
            socket.send(json.dumps({"type": "CloseStream"}))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SpeechError(f"deepgram sent no final result within {self._timeout:g} s", retryable=True)
                try:
                    message = socket.recv(timeout=remaining)
                except TimeoutError:
                    continue
                self._handle(message)
        except ConnectionClosedOK:
            pass  # the server's answer to CloseStream once everything is sent
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc
        finally:
            self.close()
        # Audio after the last final segment (none after CloseStream, normally) is still heard.
        text = " ".join(t for t in [*self._finals, self._interim] if t)
        return Transcript(text, self._confidence(), self._language, self._fed_bytes // SAMPLE_WIDTH * 1000 // self._sample_rate)

    def close(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_socket(self) -> ClientConnection:
        if self._socket is None:
            raise SpeechError("this deepgram stream is already finished or closed", retryable=False)
        return self._socket

    def _handle(self, message: str | bytes) -> list[PartialTranscript]:
        data = json.loads(message)
        kind = data.get("type")
        if kind == "Error":
            raise SpeechError(f"deepgram error: {data.get('description') or data.get('message') or data}", retryable=False)
        if kind != "Results":
            return []  # Metadata, SpeechStarted, UtteranceEnd: nothing to show
        alternatives = data.get("channel", {}).get("alternatives") or [{}]
        transcript = (alternatives[0].get("transcript") or "").strip()
        if data.get("is_final"):
            if transcript:
                self._finals.append(transcript)
                self._confidences.append((float(alternatives[0].get("confidence") or 0.0), float(data.get("duration") or 0.0)))
            self._interim = ""
            partial = PartialTranscript(" ".join(self._finals), stable=True)
        else:
            self._interim = transcript
            partial = PartialTranscript(" ".join(t for t in [*self._finals, transcript] if t))
        if partial == self._last or not partial.text:
            return []
        self._last = partial
        return [partial]

    def _confidence(self) -> float | None:
        if not self._confidences:
            return None
        seconds = sum(d for _, d in self._confidences)
        if seconds <= 0:
            return round(sum(c for c, _ in self._confidences) / len(self._confidences), 4)
        return round(sum(c * d for c, d in self._confidences) / seconds, 4)


def _websocket_base(base_url: str) -> str:
    base = base_url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            return ws + base[len(http) :]
    return base


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _closed_error(exc: ConnectionClosed) -> SpeechError:
    """A close mid-stream: 1008 means the audio was not what the handshake announced (it will
    fail again); anything else (1011, a dropped connection) may pass on another try."""
    close = exc.rcvd
    code = close.code if close is not None else None
    reason = close.reason if close is not None else "connection lost"
    return SpeechError(f"deepgram closed the stream ({code}): {reason}", retryable=code != 1008)
