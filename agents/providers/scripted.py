"""The offline scripted provider: the demo's agent when no model is configured.

It is honest about what it is without saying so in every reply: the chat page
shows a "demo agent" badge once (the session says whether the channel's agents
are scripted). It streams its replies word by word at a reading pace
(``word_delay_ms`` and ``first_token_delay_ms`` in the agent's
``provider_config``, else ``ROOMKIT_SCRIPTED_WORD_DELAY_MS`` and
``ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS``; the test runner sets both to 0), and
calls tools on keywords so the demo shows tool calls and orchestration:
``rules`` in ``provider_config`` map keywords to a tool call, and without rules
a few built-in ones apply (a person → hand off to a human,
"specialist"/"billing"/… → hand off to the next stage, "order" →
``lookup_order``, "time" → ``get_current_time``). After tool results it says
what they mean in a sentence, never their raw output; the order numbers it
suggests are the sample orders ``agents.tools.DEMO_ORDERS`` holds.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from django.conf import settings

from agents.providers.base import GREETING_PREFIX, AIRequest, AIResponse, ChatMessage, DeltaCallback, ToolCall, ToolSpec, Usage

HANDOFF_TOOL = "handoff_conversation"
SKILL_TOOL = "activate_skill"
_HUMAN_WORDS = ("human", "operator", "real person", "a person", "agent please")
_HANDOFF_WORDS = ("specialist", "billing", "refund", "invoice", "technical", "broken", "problem", "complaint")


def _last_user(messages: list[ChatMessage]) -> tuple[int, str]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i, messages[i].content
    return -1, ""


def _has_any(text: str, words: tuple[str, ...] | list[str]) -> bool:
    return any(w.lower() in text for w in words)


def _handoff_target(spec: ToolSpec) -> str | None:
    targets = spec.parameters.get("properties", {}).get("target", {}).get("enum") or []
    agents = [t for t in targets if t != "human"]
    return agents[0] if agents else None


def _delay_seconds(config: dict[str, Any], key: str, default_ms: float) -> float:
    value = config.get(key, default_ms)
    try:
        return max(0.0, min(float(value), 5000.0)) / 1000
    except (TypeError, ValueError):
        return max(0.0, float(default_ms)) / 1000


def _sample_orders() -> list[str]:
    from agents.tools import DEMO_ORDERS

    return sorted(DEMO_ORDERS)


def _describe_result(tool_name: str, content: str) -> str:
    """A tool's answer as the customer should read it: a sentence, never its raw output."""
    if tool_name in (HANDOFF_TOOL, SKILL_TOOL):
        return ""
    if content.startswith("Error:"):
        return "Sorry, I couldn't do that just now."
    try:
        data = json.loads(content)
    except ValueError:
        data = content
    if tool_name == "lookup_order" and isinstance(data, dict):
        number = str(data.get("order_id", "")).strip().lstrip("#")
        if not data.get("found"):
            return f"I couldn't find order {number}. The demo's sample orders are {', '.join(_sample_orders())}."
        what = f"Order {number}" + (f" ({data['item']})" if data.get("item") else "")
        if data.get("status") == "shipped":
            carrier = f" with {data['carrier']}" if data.get("carrier") else ""
            return f"{what} has shipped{carrier} and should arrive {data.get('eta', 'soon')}."
        if data.get("status") == "delivered":
            return f"{what} was delivered {data.get('delivered', 'already')}."
        return f"{what} is {data.get('status', 'being handled')}" + (f"; it {data['eta']}." if data.get("eta") else ".")
    if tool_name == "get_current_time" and isinstance(data, str):
        return f"It is {data.replace('T', ' at ').replace('+00:00', '')} UTC."
    return "All done."


class ScriptedProvider:
    supports_vision = False

    def __init__(self, *, agent_name: str = "assistant", config: dict[str, Any] | None = None, name: str = "scripted"):
        self.name = name
        self.agent_name = agent_name
        self.config = config or {}
        self.calls = 0

    # --- decisions ---------------------------------------------------------------
    def _tool_call(self, request: AIRequest) -> ToolCall | None:
        index, text = _last_user(request.messages)
        if index < 0 or any(m.role == "tool" for m in request.messages[index + 1 :]):
            return None  # tools already answered this turn: now speak
        lowered = text.lower()
        tools = {t.name: t for t in request.tools}
        self.calls += 1
        call_id = f"scripted_{self.calls}"
        if text.startswith(GREETING_PREFIX):
            # Handed the conversation: an order question the last agent could not answer is answered with the greeting.
            _, asked = _last_user(request.messages[:index])
            if "lookup_order" in tools and "order" in asked.lower():
                return self._order_call(call_id, asked)
            return None
        for rule in self.config.get("rules", []):
            if rule.get("tool") in tools and _has_any(lowered, rule.get("keywords", [])):
                args = {k: (v.replace("{text}", text) if isinstance(v, str) else v) for k, v in rule.get("arguments", {}).items()}
                return ToolCall(call_id, rule["tool"], args)
        if self.config.get("rules_only"):
            return None
        if HANDOFF_TOOL in tools:
            targets = tools[HANDOFF_TOOL].parameters.get("properties", {}).get("target", {}).get("enum") or []
            if "human" in targets and _has_any(lowered, _HUMAN_WORDS):
                return ToolCall(
                    call_id, HANDOFF_TOOL, {"target": "human", "reason": "The user asked for a person", "summary": text[:300]}
                )
            target = _handoff_target(tools[HANDOFF_TOOL])
            # An order question goes to whoever can look orders up (the demo's triage cannot).
            order_elsewhere = "lookup_order" not in tools and "order" in lowered
            if target and (_has_any(lowered, _HANDOFF_WORDS) or order_elsewhere):
                return ToolCall(
                    call_id,
                    HANDOFF_TOOL,
                    {"target": target, "reason": "Needs a specialist", "summary": f"The user wrote: {text[:300]}"},
                )
        if "lookup_order" in tools and "order" in lowered:
            return self._order_call(call_id, text)
        if "get_current_time" in tools and re.search(r"\btime\b", lowered):
            return ToolCall(call_id, "get_current_time", {})
        return None

    @staticmethod
    def _order_call(call_id: str, text: str) -> ToolCall:
        number = re.search(r"\d{3,}", text)
        return ToolCall(call_id, "lookup_order", {"order_id": number.group(0) if number else _sample_orders()[0]})

    def _text(self, request: AIRequest, call: ToolCall | None) -> str:
        if call is not None:
            if call.name == HANDOFF_TOOL:
                who = "a human operator" if call.arguments.get("target") == "human" else "a specialist"
                return f"Let me transfer you to {who}."
            return ""
        results = []
        for m in reversed(request.messages):
            if m.role != "tool":
                break
            said = _describe_result(m.tool_name or "", m.content)
            if said:
                results.append(said)
        _, text = _last_user(request.messages)
        if results:
            greeting = f"Hello! I'm {self.agent_name}. " if text.startswith(GREETING_PREFIX) else ""
            return greeting + " ".join(reversed(results))
        if not text or text.startswith(GREETING_PREFIX):
            return f"Hello! I'm {self.agent_name}. How can I help you?"
        orders = _sample_orders()
        # Only what this agent answers: the demo's triage has no clock, and offered the time it could not tell.
        the_time = ", the time," if any(t.name == "get_current_time" for t in request.tools) else ","
        return (
            f"You said: “{text[:200]}”. I'm a demo agent and answer a few things only: "
            f"ask me about order {orders[0]} (or {', '.join(orders[1:])}){the_time} or ask for a person."
        )

    # --- protocol ----------------------------------------------------------------
    def generate(self, request: AIRequest) -> AIResponse:
        return self.stream(request, lambda _delta: None)

    def stream(self, request: AIRequest, on_delta: DeltaCallback) -> AIResponse:
        call = self._tool_call(request)
        text = self._text(request, call)
        first_delay = _delay_seconds(self.config, "first_token_delay_ms", settings.ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS)
        word_delay = _delay_seconds(self.config, "word_delay_ms", settings.ROOMKIT_SCRIPTED_WORD_DELAY_MS)
        if first_delay:
            time.sleep(first_delay)
        pieces = re.findall(r"\S+\s*", text)
        for i, piece in enumerate(pieces):
            if i and word_delay:
                time.sleep(word_delay)
            on_delta(piece)
        words_in = sum(len(m.content.split()) for m in request.messages) + len(request.system.split())
        return AIResponse(
            text,
            [call] if call else [],
            Usage(words_in, len(pieces)),
            "tool_calls" if call else "stop",
            self.name,
        )
