"""OpenAI Chat Completions through the ``openai`` SDK; also any OpenAI-compatible server (vLLM, Ollama)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai

from agents.providers.base import (
    AIRequest,
    AIResponse,
    ChatMessage,
    DeltaCallback,
    ProviderError,
    ProviderTimeout,
    ToolCall,
    Usage,
)
from agents.providers.http_common import sse_json
from rooms.infra.backoff import parse_retry_after
from rooms.infra.clients import cached_client, retryable_status

# --- keeping the connection after a stream ------------------------------------------------
#
# A stream's reader stops at its ``data: [DONE]`` event (the SDK's own Stream
# does, and so does ``stream`` below) and closes the response before the
# HTTP/1.1 chunked body's terminator has been read, so the
# connection pool cannot reuse the connection: it is dropped, and the next
# request (the next reply, or the next round of a tool loop) pays a new TCP
# and, against the vendor, TLS handshake before it even leaves
# (openai/openai-python#3440; the maintainers want it handled in the
# transport). Here the transport reads that terminator after ``[DONE]`` and
# then closes the response, which hands the connection back to the pool: at
# once when it has already arrived (the usual case), else in the background,
# so a reply never waits for it.

_DONE = b"data: [DONE]\n\n"
# Past [DONE] only the terminator is due: more than a few chunks means the
# server is still talking, and the connection is dropped as before.
_MAX_DRAIN_CHUNKS = 4
_drainer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="roomkit-sse-drain")


class _DrainAfterDone(httpx2.SyncByteStream):
    """A streamed body that, closed right after ``[DONE]``, reads its end before closing."""

    def __init__(self, inner: httpx2.SyncByteStream, network_stream: Any) -> None:
        self._inner = inner
        self._network_stream = network_stream
        self._iterator: Iterator[bytes] | None = None
        self._tail = b""
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        self._iterator = iter(self._inner)
        for chunk in self._iterator:
            self._tail = (self._tail + chunk)[-len(_DONE) :]
            yield chunk
        self._finished = True

    def close(self) -> None:
        if self._iterator is None or self._finished or self._tail != _DONE:
            self._inner.close()
        elif self._readable():
            self._drain_and_close()
        else:
            _drainer.submit(self._drain_and_close)

    def _readable(self) -> bool:
        try:
            return bool(self._network_stream.get_extra_info("is_readable"))
        except Exception:  # noqa: BLE001 - no way to tell: do not block the caller
            return False

    def _drain_and_close(self) -> None:
        try:
            for _ in itertools.islice(self._iterator or iter(()), _MAX_DRAIN_CHUNKS):
                pass
        except Exception:  # noqa: BLE001 - the server went away: the connection is simply not reused
            pass
        finally:
            self._inner.close()


class _StreamTransport(httpx2.HTTPTransport):
    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(request)
        network_stream = response.extensions.get("network_stream")
        if network_stream is not None and response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = _DrainAfterDone(response.stream, network_stream)
        return response


def _client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    # Retries are ours (with backoff and a fallback provider), not the SDK's.
    # The SDK's own HTTP client defaults, with the transport above.
    return cached_client(
        ("openai", api_key, base_url, timeout),
        lambda: openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(
                timeout=timeout,
                transport=_StreamTransport(limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100)),
            ),
        ),
    )


def to_openai_messages(system: str, messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                    for c in m.tool_calls
                ]
            out.append(msg)
        elif m.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in m.images]
            out.append({"role": "user", "content": parts})
        else:
            out.append({"role": "user", "content": m.content})
    return out


def to_openai_tools(request: AIRequest) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in request.tools
    ]


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments as a dict; a model that wrote broken JSON gets it back as ``_raw``."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


class OpenAIChatProvider:
    """Chat Completions with tools, streaming (SSE) and usage."""

    supports_vision = True

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None, timeout: float = 60.0, name: str = "openai"):
        self.name = name
        self.model = model
        self.client = _client(api_key or "not-needed", base_url or None, timeout)

    def _params(self, request: AIRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": to_openai_messages(request.system, request.messages)}
        if request.tools:
            body["tools"] = to_openai_tools(request)
        params: dict[str, Any] = {
            "model": request.model or self.model,
            # The context is already plain JSON: it travels as the request's body
            # as is. Given as typed params, the SDK re-walks every message and
            # tool schema (10-30 ms for a 20-turn context, on every round).
            "messages": [],
            "extra_body": body,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    def generate(self, request: AIRequest) -> AIResponse:
        try:
            completion = self.client.chat.completions.create(**self._params(request))
        except Exception as exc:
            raise _mapped(exc) from exc
        choice = completion.choices[0]
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=parse_arguments(c.function.arguments))
            for c in (choice.message.tool_calls or [])
        ]
        usage = Usage()
        if completion.usage is not None:
            usage = Usage(completion.usage.prompt_tokens or 0, completion.usage.completion_tokens or 0)
        return AIResponse(choice.message.content or "", calls, usage, choice.finish_reason or "", self.name)

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        # The SDK sends the request (auth, headers, timeouts, its status
        # errors); the server-sent events are decoded here (httpx-sse, as the
        # specification says) into plain JSON. The
        # SDK's own Stream builds a pydantic model of every chunk, ~0.2 ms of
        # CPU each on this machine against ~0.01 ms for json.loads: on the way
        # to the first token, and for every token after it, in a process whose
        # sockets wait for the same interpreter lock.
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = Usage()
        finish = ""
        try:
            with self.client.chat.completions.with_streaming_response.create(
                **self._params(request), stream=True, stream_options={"include_usage": True}
            ) as response:
                for chunk in sse_json(response.http_response):
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = Usage(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0)
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            text.append(content)
                            on_delta(content)
                        for tc in delta.get("tool_calls") or []:
                            slot = calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
                            if tc.get("id"):
                                slot["id"] = tc["id"]
                            function = tc.get("function") or {}
                            slot["name"] += function.get("name") or ""
                            slot["arguments"] += function.get("arguments") or ""
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except Exception as exc:
            raise _mapped(exc) from exc
        tool_calls = [
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=parse_arguments(c["arguments"]))
            for i, c in sorted(calls.items())
        ]
        return AIResponse("".join(text), tool_calls, usage, finish, self.name)


def _mapped(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(str(exc))
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            f"{exc.status_code}: {exc.message}",
            retryable=retryable_status(exc.status_code),
            status=exc.status_code,
            retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"connection failed: {exc}", retryable=True)
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout(str(exc) or "timed out mid-stream")
    if isinstance(exc, httpx2.TransportError):
        # Read errors of the stream itself (the connection cut midway) come
        # from the HTTP library, not wrapped by the SDK.
        return ProviderError(f"connection failed mid-stream: {exc}", retryable=True)
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
