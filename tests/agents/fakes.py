"""Local fake AI vendor servers over real HTTP, so the vendors' SDKs run their own code.

``FakeOpenAIServer`` speaks Chat Completions (JSON and SSE streaming, tool
calls, usage); ``FakeAnthropicServer`` speaks Messages (JSON and the event
stream, tool use, usage). Each answers from a script of ``Turn``s, one per
request (then ``default``), and records every request body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import LocalHTTPServer


@dataclass
class Turn:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200  # an error status answers with the vendor's error JSON
    delay: float = 0.0  # before anything is sent (a slow or hung provider)
    ttft: float = 0.0  # streaming: before the first chunk
    chunk: int = 4  # characters per streamed text delta
    usage: tuple[int, int] = (12, 7)
    # Streaming: after this many text deltas the stream dies midway, either
    # by the connection dropping (no end of the chunked body) or, with
    # ``error_event``, by the vendor's own error event inside the stream.
    break_after: int | None = None
    error_event: bool = False
    # Streaming: the body as these raw pieces, each one network write, instead
    # of the scripted events (to test SSE framing: CRLF, comments, fields).
    raw_sse: list[str] | None = None


class _FakeServer(LocalHTTPServer):
    def __init__(self, turns: list[Turn] | None = None, default: Turn | None = None) -> None:
        self.turns = list(turns or [])
        self.default = default or Turn(text="ok")
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrivals: list[float] = []  # time.perf_counter() when each request was read
        self.peers: list[tuple[str, int]] = []  # the client's address of each request (its connection)
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive and chunked streams, as the vendors' servers speak; small
            # SSE writes leave at once (no Nagle delay).
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                arrived = time.perf_counter()
                with outer._lock:
                    outer.arrivals.append(arrived)
                    outer.peers.append(self.client_address)
                    outer.requests.append(body)
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    turn = outer.turns.pop(0) if outer.turns else outer.default
                if turn.delay:
                    time.sleep(turn.delay)
                try:
                    if turn.raw_sse is not None:
                        outer.answer_raw(self, turn.raw_sse)
                        return
                    outer.answer(self, body, turn)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(Handler)

    @staticmethod
    def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        raw = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    @staticmethod
    def start_sse(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    @staticmethod
    def sse_write(handler: BaseHTTPRequestHandler, text: str) -> None:
        data = text.encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        handler.wfile.flush()

    @staticmethod
    def end_sse(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def answer_raw(self, handler: BaseHTTPRequestHandler, pieces: list[str]) -> None:
        self.start_sse(handler)
        for piece in pieces:
            self.sse_write(handler, piece)
            time.sleep(0.002)  # separate reads on the client's side, so pieces are split as sent
        self.end_sse(handler)

    @staticmethod
    def pieces(text: str, size: int) -> list[str]:
        return [text[i : i + size] for i in range(0, len(text), size)]

    @staticmethod
    def drop(handler: BaseHTTPRequestHandler) -> None:
        """Cut the connection where the stream is (the client sees a body that never ends properly)."""
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], turn: Turn) -> None:
        raise NotImplementedError


class FakeOpenAIServer(_FakeServer):
    """``POST /v1/chat/completions``; point the SDK at ``url + "/v1"``."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], turn: Turn) -> None:
        if turn.status != 200:
            self.send_json(
                handler, turn.status, {"error": {"message": f"fake error {turn.status}", "type": "server_error", "code": None}}
            )
            return
        calls = [
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(turn.tool_calls)
        ]
        finish = "tool_calls" if calls else "stop"
        usage = {"prompt_tokens": turn.usage[0], "completion_tokens": turn.usage[1], "total_tokens": sum(turn.usage)}
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body.get("model", "fake")}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if calls:
                message["tool_calls"] = calls
            self.send_json(
                handler,
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        self.start_sse(handler)

        def emit(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            self.sse_write(handler, f"data: {json.dumps(chunk)}\n\n")

        if turn.ttft:
            time.sleep(turn.ttft)
        emit([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for n, piece in enumerate(self.pieces(turn.text, turn.chunk)):
            if n == turn.break_after:
                if turn.error_event:
                    self.sse_write(handler, 'data: {"error": {"message": "fake error mid-stream", "type": "server_error"}}\n\n')
                    self.sse_write(handler, "data: [DONE]\n\n")
                    self.end_sse(handler)
                else:
                    self.drop(handler)
                return
            emit([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            first = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": args[:half]},
            }
            emit([{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}])
            emit(
                [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]},
                        "finish_reason": None,
                    }
                ]
            )
        emit([{"index": 0, "delta": {}, "finish_reason": finish}])
        if (body.get("stream_options") or {}).get("include_usage"):
            emit([], usage=usage)
        self.sse_write(handler, "data: [DONE]\n\n")
        self.end_sse(handler)


class FakeAnthropicServer(_FakeServer):
    """``POST /v1/messages``; point the SDK at ``url``."""

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], turn: Turn) -> None:
        if turn.status != 200:
            self.send_json(
                handler, turn.status, {"type": "error", "error": {"type": "api_error", "message": f"fake error {turn.status}"}}
            )
            return
        blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
        blocks += [{"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a} for i, (n, a) in enumerate(turn.tool_calls)]
        stop = "tool_use" if turn.tool_calls else "end_turn"
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": turn.usage[0], "output_tokens": turn.usage[1]},
        }
        if not body.get("stream"):
            self.send_json(handler, 200, message)
            return
        self.start_sse(handler)

        def emit(kind: str, data: dict[str, Any]) -> None:
            self.sse_write(handler, f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n")

        if turn.ttft:
            time.sleep(turn.ttft)
        emit(
            "message_start",
            {
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": turn.usage[0], "output_tokens": 1},
                }
            },
        )
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                emit("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                for n, piece in enumerate(self.pieces(block["text"], turn.chunk)):
                    if n == turn.break_after:
                        if turn.error_event:
                            emit("error", {"error": {"type": "overloaded_error", "message": "fake overloaded mid-stream"}})
                            self.end_sse(handler)
                        else:
                            self.drop(handler)
                        return
                    emit("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
            else:
                emit(
                    "content_block_start",
                    {
                        "index": index,
                        "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}},
                    },
                )
                raw = json.dumps(block["input"])
                for piece in self.pieces(raw, max(1, len(raw) // 2)):
                    emit("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
            emit("content_block_stop", {"index": index})
        emit("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": turn.usage[1]}})
        emit("message_stop", {})
        self.end_sse(handler)


class FakeGeminiServer(_FakeServer):
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``."""

    def __init__(self, turns: list[Turn] | None = None, default: Turn | None = None) -> None:
        super().__init__(turns, default)
        self.paths: list[str] = []

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], turn: Turn) -> None:
        self.paths.append(handler.path)
        if turn.status != 200:
            self.send_json(
                handler, turn.status, {"error": {"code": turn.status, "message": "fake error", "status": "UNAVAILABLE"}}
            )
            return
        calls = [{"functionCall": {"name": n, "args": a}} for n, a in turn.tool_calls]
        usage = {"promptTokenCount": turn.usage[0], "candidatesTokenCount": turn.usage[1]}

        def response(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                cand["finishReason"] = finish
            return {"candidates": [cand], "usageMetadata": usage}

        if ":streamGenerateContent" not in handler.path:
            self.send_json(handler, 200, response(([{"text": turn.text}] if turn.text else []) + calls, "STOP"))
            return
        self.start_sse(handler)
        if turn.ttft:
            time.sleep(turn.ttft)
        pieces = self.pieces(turn.text, turn.chunk)
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1 and not calls
            self.sse_write(handler, f"data: {json.dumps(response([{'text': piece}], 'STOP' if last else None))}\n\n")
        if calls:
            self.sse_write(handler, f"data: {json.dumps(response(calls, 'STOP'))}\n\n")
        self.end_sse(handler)
