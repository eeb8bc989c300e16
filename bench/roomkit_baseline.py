"""The reference: the RoomKit library's own in-memory engine on this machine.

Runs under a Python 3.12+ that has ``roomkit`` installed (it is not one of our
dependencies), e.g.::

    python3.12 -m venv /tmp/rk && /tmp/rk/bin/pip install roomkit==0.6.7
    /tmp/rk/bin/python bench/roomkit_baseline.py 3000 300 ws,transport,senders-32

Same shape as bench/inbound.py: one room, one sender on an HTTP channel, one
WebSocket connection bound (its send function records arrival), and the
variant with two more HTTP transports (mock providers). Nothing is durable:
the store is RoomKit's InMemoryStore. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def _bench_kit(on_send: Callable[[str, Any], Awaitable[None]], transports: int = 0) -> Any:
    """One room "bench": a sender on HTTP channel "src", a WebSocket connection whose
    send function is ``on_send``, and ``transports`` more HTTP channels (mock providers)."""
    from roomkit import HTTPChannel, MockHTTPProvider, RoomKit, WebSocketChannel

    kit = RoomKit()
    kit.register_channel(HTTPChannel("src", provider=MockHTTPProvider()))
    ws = WebSocketChannel("ws")
    ws.register_connection("viewer", on_send)
    kit.register_channel(ws)
    await kit.create_room(room_id="bench")
    await kit.attach_channel("bench", "src")
    await kit.attach_channel("bench", "ws")
    for n in range(1, transports + 1):
        kit.register_channel(HTTPChannel(f"out{n}", provider=MockHTTPProvider()))
        await kit.attach_channel("bench", f"out{n}")
    return kit


async def _send(kit: Any, i: int, key: str) -> float:
    """Send "message i" from the bench user; return when it was sent."""
    from roomkit import InboundMessage, TextContent

    t0 = time.perf_counter()
    await kit.process_inbound(
        InboundMessage(channel_id="src", sender_id="bench-user", content=TextContent(body=f"message {i}"), idempotency_key=key),
        room_id="bench",
    )
    return t0


def _report(variant: str, messages: int, elapsed: float, latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "variant": variant,
        "messages": messages,
        "events_per_s": messages / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[round(0.99 * (len(ordered) - 1))] * 1000,
    }


async def run(variant: str, messages: int, warmup: int) -> dict:
    """One sender, one message after another, each awaited until the socket has it."""
    arrived: list[float] = []

    async def on_send(connection_id: str, event: Any) -> None:
        arrived.append(time.perf_counter())

    kit = await _bench_kit(on_send, transports=2 if variant == "transport" else 0)
    latencies: list[float] = []
    started = 0.0
    for i in range(warmup + messages):
        if i == warmup:
            started = time.perf_counter()
        before = len(arrived)
        t0 = await _send(kit, i, f"{variant}-{i}")
        while len(arrived) == before:
            await asyncio.sleep(0)
        if i >= warmup:
            latencies.append(arrived[-1] - t0)
    return _report(variant, messages, time.perf_counter() - started, latencies)


async def run_senders(senders: int, messages: int, warmup: int) -> dict:
    """``senders`` tasks send at once into the one room (the library's own concurrency: asyncio)."""
    arrived: dict[str, float] = {}

    async def on_send(connection_id: str, event: Any) -> None:
        arrived[event.content.body] = time.perf_counter()

    kit = await _bench_kit(on_send)
    for i in range(warmup):
        await _send(kit, -1 - i, f"s-{-1 - i}")
    per = messages // senders
    sent: dict[str, float] = {}

    async def sender(k: int) -> None:
        for i in range(k * per, (k + 1) * per):
            sent[f"message {i}"] = await _send(kit, i, f"s-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(senders)))
    while any(body not in arrived for body in sent):
        await asyncio.sleep(0)
    elapsed = max(arrived[body] for body in sent) - started
    return _report(f"senders-{senders}", per * senders, elapsed, [arrived[body] - t0 for body, t0 in sent.items()])


def main() -> None:
    messages, warmup, variants = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    results = [
        asyncio.run(run_senders(int(v.split("-")[1]), messages, warmup) if v.startswith("senders-") else run(v, messages, warmup))
        for v in variants
    ]
    print(json.dumps({"db": "roomkit-in-memory", "results": results}))


if __name__ == "__main__":
    main()
