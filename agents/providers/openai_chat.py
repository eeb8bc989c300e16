"""OpenAI Chat Completions through the ``openai`` SDK; also any OpenAI-compatible server (vLLM, Ollama)."""

from __future__ import annotations

import json
from typing import Any

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
    cached_client,
    retryable_status,
)


def _client(api_key: str, base_url: str | None, timeout: float) -> openai.OpenAI:
    # Retries are ours (with backoff and a fallback provider), not the SDK's.
    return cached_client(
        ("openai", api_key, base_url, timeout),
        lambda: openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0),
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
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = Usage()
        finish = ""
        try:
            chunks = self.client.chat.completions.create(
                **self._params(request), stream=True, stream_options={"include_usage": True}
            )
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        text.append(delta.content)
                        on_delta(delta.content)
                    for tc in (delta.tool_calls if delta is not None else None) or []:
                        slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
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
            f"{exc.status_code}: {exc.message}", retryable=retryable_status(exc.status_code), status=exc.status_code
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"connection failed: {exc}", retryable=True)
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)
