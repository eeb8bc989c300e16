"""Anthropic Messages through the ``anthropic`` SDK: tools, streaming, vision, usage."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

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
from agents.providers.openai_chat import parse_arguments
from rooms.infra.backoff import parse_retry_after
from rooms.infra.clients import cached_client, retryable_status


def _client(api_key: str, base_url: str | None, timeout: float) -> anthropic.Anthropic:
    # Retries are ours (with backoff and a fallback provider), not the SDK's.
    return cached_client(
        ("anthropic", api_key, base_url, timeout),
        lambda: anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0),
    )


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def to_anthropic_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages API turns: tool results go back as user turns; same-role neighbours are merged."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            role = "user"
            blocks: list[dict[str, Any]] = [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
        elif m.role == "assistant":
            role = "assistant"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
        else:
            role = "user"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [_image_block(url) for url in m.images]
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


class AnthropicMessagesProvider:
    supports_vision = True

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None, timeout: float = 60.0, name: str = "anthropic"):
        self.name = name
        self.model = model
        self.client = _client(api_key or "not-needed", base_url or None, timeout)

    def _params(self, request: AIRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": to_anthropic_messages(request.messages)}
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
        # The Messages API of this SDK generation takes no sampling temperature
        # (``messages.create`` has no such parameter): the agent's is not sent.
        # The context is plain JSON already: it goes as the body as is, rather
        # than through the SDK's per-message typed transform (milliseconds per round).
        return {"model": request.model or self.model, "messages": [], "extra_body": body, "max_tokens": request.max_tokens}

    def generate(self, request: AIRequest) -> AIResponse:
        try:
            message = self.client.messages.create(**self._params(request))
        except Exception as exc:
            raise _mapped(exc) from exc
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [ToolCall(id=b.id, name=b.name, arguments=dict(b.input or {})) for b in message.content if b.type == "tool_use"]
        usage = Usage(message.usage.input_tokens or 0, message.usage.output_tokens or 0)
        return AIResponse(text, calls, usage, message.stop_reason or "", self.name)

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        text: list[str] = []
        blocks: dict[int, dict[str, Any]] = {}
        usage = Usage()
        stop = ""
        try:
            events = self.client.messages.create(**self._params(request), stream=True)
            for event in events:
                kind = event.type
                if kind == "message_start":
                    usage.input_tokens = event.message.usage.input_tokens or 0
                    usage.output_tokens = event.message.usage.output_tokens or 0
                elif kind == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    blocks[event.index] = {"id": block.id, "name": block.name, "json": "", "input": block.input}
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        text.append(delta.text)
                        on_delta(delta.text)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"] += delta.partial_json
                elif kind == "message_delta":
                    stop = event.delta.stop_reason or stop
                    if event.usage is not None and event.usage.output_tokens is not None:
                        usage.output_tokens = event.usage.output_tokens
        except Exception as exc:
            raise _mapped(exc) from exc
        calls = [
            ToolCall(id=b["id"], name=b["name"], arguments=parse_arguments(b["json"]) if b["json"] else dict(b["input"] or {}))
            for _, b in sorted(blocks.items())
        ]
        return AIResponse("".join(text), calls, usage, stop, self.name)


def _mapped(exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderTimeout(str(exc))
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code < 400:
            # An ``error`` event inside a stream that had started fine (the SDK
            # raises it with the stream's 200): the vendor failed midway
            # (overloaded, internal error), which another attempt may not.
            return ProviderError(f"error event mid-stream: {exc.message}", retryable=True)
        return ProviderError(
            f"{exc.status_code}: {exc.message}",
            retryable=retryable_status(exc.status_code),
            status=exc.status_code,
            retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(f"connection failed: {exc}", retryable=True)
    if isinstance(exc, httpx2.TransportError):
        # The SDK does not wrap errors while it reads a stream: a connection
        # cut midway arrives as the HTTP library's own error.
        return ProviderError(f"connection failed mid-stream: {exc}", retryable=True)
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
