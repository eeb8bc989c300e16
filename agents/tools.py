"""Tools agents may call: Python callables registered with a decorator and JSON-schema parameters.

::

    from agents.tools import ToolContext, tool

    @tool(description="Look up an order's status", parameters={
        "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]})
    def lookup_order(ctx: ToolContext, order_id: str) -> dict:
        ...

An agent lists the names it may call (``Agent.tools``; a room's
``ai_config["tools"]`` narrows them). Calls of one round run in parallel;
arguments are validated against the schema; an error is returned to the model
as text, never raised into the loop; a huge result is cut, keeping its head
and its tail.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonschema
from django.db import connection

from agents.providers.base import ToolCall, ToolSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolContext:
    """Where a tool call happens: the room, the calling agent, the generation and the message it answers."""

    room_id: str
    agent_id: str
    generation_id: str = ""
    trigger_event_id: str | None = None


ToolFunction = Callable[..., Any]


# What the customer reads while a tool without a label of its own runs (an MCP server's, say):
# the tool's name and arguments are for the model and the operators, not for the customer.
DEFAULT_TOOL_LABEL = "Working on it…"
MAX_TOOL_LABEL = 80


@dataclass(frozen=True)
class Tool:
    """A callable the model may call. ``concurrent=False`` tools run one at a time in the generation's own thread
    (those that write the database under the room's lock, like a handoff).

    ``label`` is what the customer sees while it runs, in their words ("Looking up your order…").
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: ToolFunction
    concurrent: bool = True
    label: str = ""

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    @property
    def display_label(self) -> str:
        return self.label or DEFAULT_TOOL_LABEL


def tool_label(t: Tool | None) -> str:
    """What the customer sees while ``t`` runs (the generic label for an unknown tool)."""
    return t.display_label if t is not None else DEFAULT_TOOL_LABEL


_registry: dict[str, Tool] = {}
_lock = threading.Lock()
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def tool(
    name: str | None = None,
    *,
    description: str = "",
    parameters: dict[str, Any] | None = None,
    concurrent: bool = True,
    label: str = "",
) -> Callable[[ToolFunction], ToolFunction]:
    """Register the decorated ``fn(ctx, **arguments)`` as a tool (its docstring is the default description).

    ``label``: what the customer sees while it runs ("Looking up your order…"); default ``DEFAULT_TOOL_LABEL``.
    """

    def decorate(fn: ToolFunction) -> ToolFunction:
        register_tool(
            Tool(
                name=name or fn.__name__,
                description=description or (fn.__doc__ or "").strip(),
                parameters=parameters or _EMPTY_SCHEMA,
                fn=fn,
                concurrent=concurrent,
                label=label,
            )
        )
        return fn

    return decorate


def register_tool(t: Tool) -> Tool:
    jsonschema.Draft202012Validator.check_schema(t.parameters)
    if not isinstance(t.label, str) or len(t.label) > MAX_TOOL_LABEL:
        raise ValueError(f"tool {t.name}: label must be text of at most {MAX_TOOL_LABEL} characters")
    with _lock:
        _registry[t.name] = t
    return t


def unregister_tool(name: str) -> None:
    with _lock:
        _registry.pop(name, None)


def get_tool(name: str) -> Tool | None:
    return _registry.get(name)


def registered_tools() -> list[str]:
    return sorted(_registry)


# --- execution -------------------------------------------------------------------


@dataclass(frozen=True)
class ToolOutcome:
    call: ToolCall
    result: str
    ok: bool
    duration_ms: float


def cut_result(text: str, limit: int) -> str:
    """``text`` at most about ``limit`` characters: the head and the tail, with what was cut in between."""
    if len(text) <= limit:
        return text
    marker = "\n…[{} characters cut]…\n"
    keep = max(0, limit - len(marker) - 8)
    head = keep * 2 // 3
    tail = keep - head
    cut = len(text) - head - tail
    return text[:head] + marker.format(cut) + (text[-tail:] if tail else "")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def run_tool(t: Tool | None, call: ToolCall, ctx: ToolContext, *, max_chars: int) -> ToolOutcome:
    """One call, never raising: unknown tools, bad arguments and exceptions come back as error text."""
    started = time.perf_counter()
    if t is None:
        result, ok = f"Error: unknown tool '{call.name}'.", False
    else:
        try:
            jsonschema.validate(call.arguments, t.parameters)
        except jsonschema.ValidationError as exc:
            result, ok = f"Error: invalid arguments for {call.name}: {exc.message}", False
        else:
            try:
                result, ok = _as_text(t.fn(ctx, **call.arguments)), True
            except Exception as exc:
                logger.info("tool %s failed: %s", call.name, exc)
                result, ok = f"Error: {call.name} failed: {type(exc).__name__}: {exc}", False
    return ToolOutcome(call, cut_result(result, max_chars), ok, (time.perf_counter() - started) * 1000)


def _run_in_thread(t: Tool | None, call: ToolCall, ctx: ToolContext, max_chars: int) -> ToolOutcome:
    try:
        return run_tool(t, call, ctx, max_chars=max_chars)
    finally:
        # A pool thread's own database connection, if the tool opened one.
        connection.close()


_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="roomkit-tool")


def run_tool_calls(
    calls: list[ToolCall],
    resolve: Callable[[str], Tool | None],
    ctx: ToolContext,
    *,
    max_chars: int,
    timeout: float | None = None,
) -> list[ToolOutcome]:
    """Run one round's calls, in parallel where the tools allow it; results in the calls' order."""
    tools = [resolve(c.name) for c in calls]
    outcomes: dict[int, ToolOutcome] = {}
    parallel = [i for i, t in enumerate(tools) if t is not None and t.concurrent]
    if len(parallel) > 1:
        futures = {i: _pool.submit(_run_in_thread, tools[i], calls[i], ctx, max_chars) for i in parallel}
        for i, fut in futures.items():
            try:
                outcomes[i] = fut.result(timeout=timeout)
            except Exception:
                outcomes[i] = ToolOutcome(calls[i], f"Error: {calls[i].name} did not finish in time.", False, 0.0)
    for i, t in enumerate(tools):
        if i not in outcomes:
            outcomes[i] = run_tool(t, calls[i], ctx, max_chars=max_chars)
    return [outcomes[i] for i in range(len(calls))]


# --- built-in tools ------------------------------------------------------------------

# The demo's sample orders: the scripted agent suggests these numbers, so each one it names exists.
DEMO_ORDERS: dict[str, dict[str, str]] = {
    "1001": {"item": "a pair of walking boots", "status": "shipped", "carrier": "DemoPost", "eta": "in 2 days"},
    "1002": {"item": "a rain jacket", "status": "processing", "eta": "ships tomorrow"},
    "1003": {"item": "a thermos flask", "status": "delivered", "delivered": "yesterday"},
}


@tool(
    description="Look up the status of a (demo) order by its number.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "The order number, e.g. 1001"}},
        "required": ["order_id"],
    },
    label="Looking up your order…",
)
def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, Any]:
    order = DEMO_ORDERS.get(order_id.strip().lstrip("#"))
    if order is None:
        return {"order_id": order_id, "found": False, "known_orders": sorted(DEMO_ORDERS)}
    return {"order_id": order_id, "found": True, **order}


@tool(description="The current date and time in UTC (ISO 8601).", label="Checking the time…")
def get_current_time(ctx: ToolContext) -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
