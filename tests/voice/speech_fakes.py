"""Local fake speech vendors over real HTTP and WebSocket, speaking each vendor's documented protocol.

- ``FakeOpenAIAudio``: ``POST /v1/audio/transcriptions`` (multipart upload,
  JSON answer) and ``POST /v1/audio/speech`` (JSON body, raw PCM streamed back
  in chunks), Bearer auth.
- ``FakeElevenLabs``: ``POST /v1/text-to-speech/{voice_id}/stream`` with
  ``xi-api-key``, PCM streamed back in chunks.
- ``FakeDeepgram``: the live ``/v1/listen`` WebSocket with ``Token`` auth:
  binary audio in, interim and final ``Results`` out, ``CloseStream`` answered
  by the last results, ``Metadata`` and a normal close.

Each records what it received, and can answer with an error status instead.
"""

from __future__ import annotations

import email.parser
import email.policy
import http
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from tests.support import LocalHTTPServer, RecordedRequest

# A line per connection from the fake WebSocket server is noise in a test run.
logging.getLogger("websockets.server").setLevel(logging.WARNING)


@dataclass
class Answer:
    """What a fake says to the next request: an error status, or audio in chunks."""

    status: int = 200
    error_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    chunk_delay: float = 0.0  # seconds between streamed chunks


def sine_pcm(seconds: float, rate: int, freq: float = 220.0) -> bytes:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


class _StreamingFake(LocalHTTPServer):
    """A fake whose answers may stream a body in chunks (HTTP/1.1 chunked) and notices a client leaving."""

    vendor_error: Any = {"error": "fake error"}

    def __init__(self, answers: list[Answer] | None = None, default: Answer | None = None) -> None:
        self.answers = list(answers or [])
        self.default = default or Answer()
        self.requests: list[RecordedRequest] = []
        self.client_left = threading.Event()  # a client closed its connection mid-stream
        self.stream_done = threading.Event()  # a streamed body was written to its end
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                # Header names lower-cased: clients spell them as they like.
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = RecordedRequest(self.command, self.path, headers, self.rfile.read(length))
                outer.requests.append(req)
                answer = outer.answers.pop(0) if outer.answers else outer.default
                if answer.status >= 300:
                    body = json.dumps(answer.error_body if answer.error_body is not None else outer.vendor_error).encode()
                    self.send_response(answer.status)
                    for k, v in {"Content-Type": "application/json", **answer.headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                status, payload, content_type = outer.respond(req, answer)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if isinstance(payload, bytes):
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in payload:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        if answer.chunk_delay:
                            time.sleep(answer.chunk_delay)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    outer.stream_done.set()
                except (BrokenPipeError, ConnectionResetError):
                    outer.client_left.set()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(Handler)

    def respond(self, req: RecordedRequest, answer: Answer) -> tuple[int, bytes | list[bytes], str]:
        raise NotImplementedError


class FakeOpenAIAudio(_StreamingFake):
    """OpenAI's audio endpoints; ``transcript`` is what every transcription says."""

    vendor_error = {
        "error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
    }

    def __init__(self, *, transcript: str = "hello world", logprobs: list[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transcript = transcript
        self.logprobs = logprobs

    def respond(self, req: RecordedRequest, answer: Answer) -> tuple[int, bytes | list[bytes], str]:
        if req.path == "/v1/audio/transcriptions":
            body: dict[str, Any] = {"text": self.transcript, "usage": {"type": "duration", "seconds": 2}}
            if self.logprobs is not None:
                body["logprobs"] = [{"token": "x", "logprob": lp, "bytes": [120]} for lp in self.logprobs]
            return 200, json.dumps(body).encode(), "application/json"
        if req.path == "/v1/audio/speech":
            return 200, answer.chunks, "audio/pcm"
        return 404, b'{"error": {"message": "not found"}}', "application/json"


class FakeElevenLabs(_StreamingFake):
    vendor_error = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}

    def respond(self, req: RecordedRequest, answer: Answer) -> tuple[int, bytes | list[bytes], str]:
        return 200, answer.chunks, "audio/pcm"


def multipart_fields(req: RecordedRequest) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a ``multipart/form-data`` body: name → (filename, content)."""
    head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
    fields = {}
    for part in message.iter_parts():
        fields[part.get_param("name", header="content-disposition")] = (part.get_filename(), part.get_payload(decode=True))
    return fields


@dataclass
class DeepgramSession:
    """What the fake Deepgram saw of one WebSocket."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    control: list[dict[str, Any]] = field(default_factory=list)


class FakeDeepgram:
    """Deepgram's live transcription WebSocket, scripted.

    It "hears" ``words`` one by one: after each ``ms_per_word`` of audio it
    sends an interim result with one more word, and every ``words_per_final``
    words it sends that segment as final. ``CloseStream`` flushes the rest as a
    final result, then ``Metadata``, then a normal close. ``reject_status``
    refuses the handshake; ``close_with`` closes mid-stream with that code
    after the first audio frame.
    """

    def __init__(
        self,
        *,
        api_key: str = "dg-key",
        words: list[str] | None = None,
        ms_per_word: int = 250,
        words_per_final: int = 3,
        reject_status: int | None = None,
        close_with: tuple[int, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.words = words or "please book a table for two".split()
        self.ms_per_word = ms_per_word
        self.words_per_final = words_per_final
        self.reject_status = reject_status
        self.close_with = close_with
        self.sessions: list[DeepgramSession] = []
        self.closed = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def __enter__(self) -> FakeDeepgram:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()

    def _check(self, connection: ServerConnection, request: Any) -> Any:
        if self.reject_status is not None:
            return connection.respond(http.HTTPStatus(self.reject_status), "rejected\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return connection.respond(
                http.HTTPStatus.UNAUTHORIZED, '{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}'
            )
        return None

    def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path)
        session = DeepgramSession(
            parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}, dict(ws.request.headers.raw_items())
        )
        self.sessions.append(session)
        rate = int(session.query.get("sample_rate", "16000"))
        bytes_per_word = rate * 2 * self.ms_per_word // 1000
        heard = 0  # words revealed so far
        final = 0  # words already sent as final
        try:
            for message in ws:
                if isinstance(message, str):
                    control = json.loads(message)
                    session.control.append(control)
                    if control.get("type") == "CloseStream":
                        if heard > final:
                            ws.send(self._result(self.words[final:heard], True, final, session, rate))
                        ws.send(
                            json.dumps(
                                {
                                    "type": "Metadata",
                                    "request_id": "fake-1",
                                    "duration": len(session.audio) / 2 / rate,
                                    "channels": 1,
                                }
                            )
                        )
                        ws.close()
                        break
                    continue
                session.audio.extend(message)
                if self.close_with is not None:
                    ws.close(*self.close_with)
                    break
                while heard < len(self.words) and len(session.audio) >= (heard + 1) * bytes_per_word:
                    heard += 1
                    if heard - final >= self.words_per_final:
                        ws.send(self._result(self.words[final:heard], True, final, session, rate))
                        final = heard
                    else:
                        ws.send(self._result(self.words[final:heard], False, final, session, rate))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    def _result(self, words: list[str], is_final: bool, first: int, session: DeepgramSession, rate: int) -> str:
        start = first * self.ms_per_word / 1000
        duration = len(words) * self.ms_per_word / 1000
        return json.dumps(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": duration,
                "start": start,
                "is_final": is_final,
                "speech_final": is_final,
                "channel": {
                    "alternatives": [
                        {
                            "transcript": " ".join(words),
                            "confidence": 0.9 if is_final else 0.5,
                            "words": [
                                {"word": w, "start": start + i * 0.25, "end": start + (i + 1) * 0.25, "confidence": 0.9}
                                for i, w in enumerate(words)
                            ],
                        }
                    ]
                },
                "metadata": {
                    "request_id": "fake-1",
                    "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
                },
                "from_finalize": False,
            }
        )
