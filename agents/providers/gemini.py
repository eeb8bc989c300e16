"""Google Gemini's ``generateContent`` REST API over httpx (function calling, SSE streaming, vision, usage).

``POST {base}/v1beta/models/{model}:generateContent`` (and
``:streamGenerateContent?alt=sse``) with the ``x-goog-api-key`` header; the
base URL is configurable (``GEMINI_BASE_URL`` or the agent's).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from agents.providers.base import AIRequest, AIResponse, ChatMessage, DeltaCallback, ToolCall, Usage
from agents.providers.http_common import check_status, http_client, mapped_http_error, sse_json

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


def _image_part(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        mime, data = url[5:].split(";base64,", 1)
        return {"inlineData": {"mimeType": mime, "data": data}}
    return {"fileData": {"mimeType": mimetypes.guess_type(url)[0] or "image/jpeg", "fileUri": url}}


def to_gemini_contents(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Gemini turns (``user``/``model``); tool results are ``functionResponse`` parts of a user turn."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            role, parts = (
                "user",
                [{"functionResponse": {"id": m.tool_call_id, "name": m.tool_name, "response": {"result": m.content}}}],
            )
        elif m.role == "assistant":
            role = "model"
            parts = [{"text": m.content}] if m.content else []
            parts += [{"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}} for c in m.tool_calls]
        else:
            role = "user"
            parts = [{"text": m.content}] if m.content else []
            parts += [_image_part(url) for url in m.images]
        if not parts:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


class GeminiProvider:
    name = "gemini"
    supports_vision = True

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None, timeout: float = 60.0) -> None:
        self.model = model
        self.api_key = api_key
        self.base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.client = http_client(timeout)

    def _url(self, request: AIRequest, method: str) -> str:
        return f"{self.base}/v1beta/models/{request.model or self.model}:{method}"

    def _body(self, request: AIRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "contents": to_gemini_contents(request.messages),
            "generationConfig": {"maxOutputTokens": request.max_tokens},
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        if request.temperature is not None:
            body["generationConfig"]["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": t.name, "description": t.description, "parameters": t.parameters} for t in request.tools
                    ]
                }
            ]
        return body

    def _headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key}

    @staticmethod
    def _read(data: dict[str, Any], text: list[str], calls: list[ToolCall], on_delta: DeltaCallback | None) -> str:
        finish = ""
        for cand in data.get("candidates") or []:
            for part in (cand.get("content") or {}).get("parts") or []:
                if part.get("text"):
                    text.append(part["text"])
                    if on_delta is not None:
                        on_delta(part["text"])
                if part.get("functionCall"):
                    fc = part["functionCall"]
                    calls.append(ToolCall(fc.get("id") or f"call_{len(calls)}", fc["name"], dict(fc.get("args") or {})))
            finish = cand.get("finishReason") or finish
        return finish

    @staticmethod
    def _usage(data: dict[str, Any]) -> Usage | None:
        meta = data.get("usageMetadata")
        return Usage(meta.get("promptTokenCount", 0), meta.get("candidatesTokenCount", 0)) if meta else None

    def generate(self, request: AIRequest) -> AIResponse:
        try:
            response = self.client.post(self._url(request, "generateContent"), json=self._body(request), headers=self._headers())
            check_status(response)
            data = response.json()
        except Exception as exc:
            raise mapped_http_error(exc) from exc
        text: list[str] = []
        calls: list[ToolCall] = []
        finish = self._read(data, text, calls, None)
        return AIResponse("".join(text), calls, self._usage(data) or Usage(), finish, self.name)

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = Usage()
        finish = ""
        url = self._url(request, "streamGenerateContent") + "?alt=sse"
        try:
            with self.client.stream("POST", url, json=self._body(request), headers=self._headers()) as response:
                check_status(response)
                for data in sse_json(response):
                    finish = self._read(data, text, calls, on_delta) or finish
                    usage = self._usage(data) or usage
        except Exception as exc:
            raise mapped_http_error(exc) from exc
        return AIResponse("".join(text), calls, usage, finish, self.name)
