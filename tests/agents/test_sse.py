"""Server-sent events as the specification frames them, through each provider's own streaming code.

The fake vendor servers send raw event streams: ``data:`` split over several
lines (joined with newlines, so a JSON object may span them), CRLF and bare CR
line endings, a CR and its LF in different network reads, comments, ``id:``
and ``retry:`` fields, events with a name. The providers must read the same
reply out of them as out of the plain framing.
"""

from __future__ import annotations

import json

from django.test import SimpleTestCase

from agents.providers.anthropic_messages import AnthropicMessagesProvider
from agents.providers.base import AIRequest, ChatMessage, ProviderError
from agents.providers.gemini import GeminiProvider
from agents.providers.mistral import MistralProvider
from agents.providers.openai_chat import OpenAIChatProvider
from tests.agents.fakes import FakeAnthropicServer, FakeGeminiServer, FakeOpenAIServer, Turn

REQUEST = AIRequest("", [ChatMessage("user", "hi")])


def _chat_chunk(delta: dict, finish: str | None = None, **extra) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip


def _multiline(payload: dict, *, eol: str = "\n") -> str:
    """``payload`` as one event whose JSON is cut over two ``data:`` lines (and so needs joining)."""
    raw = json.dumps(payload)
    cut = raw.index(":") + 1
    return f"data: {raw[:cut]}{eol}data:{raw[cut:]}{eol}{eol}"


def chat_completions_stream() -> list[str]:
    """A Chat Completions stream in every framing the specification allows; says "Hello, world"."""
    return [
        ": a comment, e.g. a keep-alive\r\n",
        "retry: 3000\r\nid: 1\r\n\r\n",  # fields without data: nothing is dispatched
        _multiline(_chat_chunk({"role": "assistant", "content": "Hel"}), eol="\r\n"),
        # One CRLF cut between two reads, then bare CR endings.
        "event: message\r\ndata: " + json.dumps(_chat_chunk({"content": "lo, "})) + "\r",
        "\n\r\n",
        "data:" + json.dumps(_chat_chunk({"content": "world"})) + "\r\r",
        _multiline(_chat_chunk({}, "stop")),
        "data: " + json.dumps({**_chat_chunk({}), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        "\n\n",
        "data: [DONE]\n\n",
    ]


class OpenAIStreamTests(SimpleTestCase):
    def test_every_framing_of_the_specification_gives_the_same_reply(self) -> None:
        with FakeOpenAIServer([Turn(raw_sse=chat_completions_stream())]) as server:
            provider = OpenAIChatProvider(model="m", api_key="k", base_url=server.base_url, timeout=10)
            deltas: list[str] = []
            response = provider.stream(REQUEST, deltas.append)
        self.assertEqual(deltas, ["Hel", "lo, ", "world"])
        self.assertEqual((response.text, response.finish_reason), ("Hello, world", "stop"))
        self.assertEqual((response.usage.input_tokens, response.usage.output_tokens), (3, 2))

    def test_a_named_error_event_mid_stream_is_a_retryable_provider_error(self) -> None:
        stream = [
            "data: " + json.dumps(_chat_chunk({"content": "Hel"})) + "\n\n",
            'event: error\ndata: {"message": "overloaded",\ndata:  "type": "server_error"}\n\n',
        ]
        with FakeOpenAIServer([Turn(raw_sse=stream)]) as server:
            provider = OpenAIChatProvider(model="m", api_key="k", base_url=server.base_url, timeout=10)
            with self.assertRaises(ProviderError) as caught:
                provider.stream(REQUEST, lambda _d: None)
        self.assertTrue(caught.exception.retryable)
        self.assertIn("overloaded", str(caught.exception))

    def test_streamed_tool_call_arguments_split_over_data_lines(self) -> None:
        call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"id": '}}
        stream = [
            _multiline(_chat_chunk({"tool_calls": [call]}), eol="\r\n"),
            _multiline(_chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "7}"}}]})),
            "data: " + json.dumps(_chat_chunk({}, "tool_calls")) + "\n\ndata: [DONE]\n\n",
        ]
        with FakeOpenAIServer([Turn(raw_sse=stream)]) as server:
            provider = OpenAIChatProvider(model="m", api_key="k", base_url=server.base_url, timeout=10)
            response = provider.stream(REQUEST, lambda _d: None)
        self.assertEqual([(c.id, c.name, c.arguments) for c in response.tool_calls], [("call_9", "lookup", {"id": 7})])


class MistralStreamTests(SimpleTestCase):
    def test_every_framing_of_the_specification_gives_the_same_reply(self) -> None:
        with FakeOpenAIServer([Turn(raw_sse=chat_completions_stream())]) as server:
            provider = MistralProvider(model="m", api_key="k", base_url=server.url, timeout=10)
            deltas: list[str] = []
            response = provider.stream(REQUEST, deltas.append)
        self.assertEqual(deltas, ["Hel", "lo, ", "world"])
        self.assertEqual((response.text, response.finish_reason), ("Hello, world", "stop"))
        self.assertEqual((response.usage.input_tokens, response.usage.output_tokens), (3, 2))

    def test_an_error_payload_mid_stream_is_a_retryable_provider_error(self) -> None:
        stream = ["data: " + json.dumps(_chat_chunk({"content": "Hel"})) + "\n\n", 'data: {"error": {"message": "busy"}}\n\n']
        with FakeOpenAIServer([Turn(raw_sse=stream)]) as server:
            provider = MistralProvider(model="m", api_key="k", base_url=server.url, timeout=10)
            with self.assertRaises(ProviderError) as caught:
                provider.stream(REQUEST, lambda _d: None)
        self.assertTrue(caught.exception.retryable)
        self.assertIn("busy", str(caught.exception))


class GeminiStreamTests(SimpleTestCase):
    def test_every_framing_of_the_specification_gives_the_same_reply(self) -> None:
        def part(text: str, finish: str | None = None) -> dict:
            candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}}

        stream = [
            ":ok\r\n\r\n",
            _multiline(part("Guten "), eol="\r\n"),
            "id: 2\rretry: 10\rdata: " + json.dumps(part("Tag", "STOP")) + "\r",
            "\r",
        ]
        with FakeGeminiServer([Turn(raw_sse=stream)]) as server:
            provider = GeminiProvider(model="g", api_key="k", base_url=server.url, timeout=10)
            deltas: list[str] = []
            response = provider.stream(REQUEST, deltas.append)
        self.assertEqual(deltas, ["Guten ", "Tag"])
        self.assertEqual((response.text, response.finish_reason), ("Guten Tag", "STOP"))
        self.assertEqual((response.usage.input_tokens, response.usage.output_tokens), (4, 2))


class AnthropicStreamTests(SimpleTestCase):
    """Anthropic's stream is read by the vendor's SDK, whose decoder must take the same framings."""

    def test_named_events_split_over_data_lines_and_crlf(self) -> None:
        def event(kind: str, data: dict, eol: str = "\r\n") -> str:
            raw = json.dumps({"type": kind, **data})
            cut = raw.index(":") + 1
            return f"event: {kind}{eol}data: {raw[:cut]}{eol}data: {raw[cut:]}{eol}{eol}"

        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
        stream = [
            ": ping\r\n",
            event("message_start", {"message": message}),
            event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}, eol="\n"),
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Bon"}}),
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "jour"}}, eol="\r"),
            event("content_block_stop", {"index": 0}),
            event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 2}}),
            event("message_stop", {}),
        ]
        with FakeAnthropicServer([Turn(raw_sse=stream)]) as server:
            provider = AnthropicMessagesProvider(model="c", api_key="k", base_url=server.url, timeout=10)
            deltas: list[str] = []
            response = provider.stream(REQUEST, deltas.append)
        self.assertEqual(deltas, ["Bon", "jour"])
        self.assertEqual((response.text, response.finish_reason), ("Bonjour", "end_turn"))
