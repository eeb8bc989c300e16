"""Mistral's chat completions REST API over httpx (tools, SSE streaming, vision with Pixtral, usage).

``POST {base}/v1/chat/completions`` with a bearer key; the base URL is
configurable (``MISTRAL_BASE_URL`` or the agent's) so a regional endpoint or a
local fake server can stand in.
"""

from __future__ import annotations

import json
from typing import Any

from agents.providers.base import AIRequest, AIResponse, ChatMessage, DeltaCallback, ToolCall, Usage
from agents.providers.http_common import check_status, http_client, mapped_http_error, sse_json
from agents.providers.openai_chat import parse_arguments

DEFAULT_BASE_URL = "https://api.mistral.ai"


def to_mistral_messages(system: str, messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "name": m.tool_name, "content": m.content})
        elif m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                    for c in m.tool_calls
                ]
            out.append(msg)
        elif m.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            parts += [{"type": "image_url", "image_url": url} for url in m.images]
            out.append({"role": "user", "content": parts})
        else:
            out.append({"role": "user", "content": m.content})
    return out


class MistralProvider:
    name = "mistral"
    supports_vision = True

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None, timeout: float = 60.0) -> None:
        self.model = model
        self.api_key = api_key
        self.url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/chat/completions"
        self.client = http_client(timeout)

    def _body(self, request: AIRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": to_mistral_messages(request.system, request.messages),
            "max_tokens": request.max_tokens,
            "stream": stream,
        }
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.5)
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
        return body

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}

    def generate(self, request: AIRequest) -> AIResponse:
        try:
            response = self.client.post(self.url, json=self._body(request, stream=False), headers=self._headers())
            check_status(response)
            data = response.json()
        except Exception as exc:
            raise mapped_http_error(exc) from exc
        choice = data["choices"][0]
        message = choice.get("message") or {}
        calls = [
            ToolCall(c.get("id") or f"call_{i}", c["function"]["name"], parse_arguments(c["function"].get("arguments")))
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        usage = data.get("usage") or {}
        return AIResponse(
            message.get("content") or "",
            calls,
            Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            choice.get("finish_reason") or "",
            self.name,
        )

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        usage = Usage()
        finish = ""
        try:
            with self.client.stream("POST", self.url, json=self._body(request, stream=True), headers=self._headers()) as response:
                check_status(response)
                for chunk in sse_json(response):
                    if chunk.get("usage"):
                        usage = Usage(chunk["usage"].get("prompt_tokens", 0), chunk["usage"].get("completion_tokens", 0))
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text.append(delta["content"])
                            on_delta(delta["content"])
                        for i, tc in enumerate(delta.get("tool_calls") or []):
                            slot = calls.setdefault(tc.get("index", i), {"id": "", "name": "", "arguments": ""})
                            slot["id"] = tc.get("id") or slot["id"]
                            fn = tc.get("function") or {}
                            slot["name"] += fn.get("name") or ""
                            args = fn.get("arguments")
                            slot["arguments"] += json.dumps(args) if isinstance(args, dict) else (args or "")
                        finish = choice.get("finish_reason") or finish
        except Exception as exc:
            raise mapped_http_error(exc) from exc
        tool_calls = [
            ToolCall(c["id"] or f"call_{i}", c["name"], parse_arguments(c["arguments"])) for i, c in sorted(calls.items())
        ]
        return AIResponse("".join(text), tool_calls, usage, finish, self.name)
