"""The small protocol every AI provider speaks, in vendor-neutral types.

A provider adapter knows its vendor's API and nothing of rooms: it turns an
``AIRequest`` (system prompt, messages, tool specs, sampling options) into the
vendor's call and the vendor's answer into an ``AIResponse`` (text, tool
calls, usage). ``stream`` also hands each text delta to ``on_delta`` as it
arrives. Errors are raised as ``ProviderError`` with ``retryable`` telling the
caller whether another attempt may succeed (timeouts, 5xx, 429).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Starts the user turn that asks an agent to greet (after a handoff): an
# instruction, not something the user said.
GREETING_PREFIX = "(Instruction from the system, not from the user)"


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ChatMessage:
    """One turn of the context. ``role``: user, assistant or tool."""

    role: str
    content: str = ""
    images: list[str] = field(default_factory=list)  # URLs or data: URLs
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant turns that called tools
    tool_call_id: str = ""  # tool turns: which call this answers
    tool_name: str = ""


@dataclass
class AIRequest:
    system: str
    messages: list[ChatMessage]
    model: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int = 1024


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass
class AIResponse:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = ""
    provider: str = ""


class ProviderError(Exception):
    """A provider call failed; ``retryable`` when the same call may succeed later."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        # Seconds the vendor asked us to wait (its Retry-After header), if it said.
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    def __init__(self, message: str = "the provider did not answer in time") -> None:
        super().__init__(message, retryable=True)


DeltaCallback = Callable[[str], None]


class AIProvider(Protocol):
    """What the generation engine needs from a vendor adapter."""

    name: str
    supports_vision: bool

    def generate(self, request: AIRequest) -> AIResponse:
        """One complete answer (text and/or tool calls) with its usage."""

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        """The same answer, calling ``on_delta`` with each text fragment as it arrives."""
