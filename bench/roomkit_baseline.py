"""The reference: the RoomKit library's own in-memory engine on this machine.

Runs under a Python 3.12+ that has ``roomkit`` installed (it is not one of our
dependencies), e.g.::

    python3.12 -m venv /tmp/rk && /tmp/rk/bin/pip install roomkit==0.6.7
    .venv/bin/python bench/inbound.py --roomkit-python /tmp/rk/bin/python

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


async def run(variant: str, messages: int, warmup: int) -> dict:
    from roomkit import HTTPChannel, InboundMessage, MockHTTPProvider, RoomKit, TextContent, WebSocketChannel

    kit = RoomKit()
    kit.register_channel(HTTPChannel("src", provider=MockHTTPProvider()))
    ws = WebSocketChannel("ws")
    arrived: list[float] = []

    async def on_send(connection_id, event) -> None:
        arrived.append(time.perf_counter())

    ws.register_connection("viewer", on_send)
    kit.register_channel(ws)
    await kit.create_room(room_id="bench")
    await kit.attach_channel("bench", "src")
    await kit.attach_channel("bench", "ws")
    if variant == "transport":
        for n in (1, 2):
            kit.register_channel(HTTPChannel(f"out{n}", provider=MockHTTPProvider()))
            await kit.attach_channel("bench", f"out{n}")

    latencies: list[float] = []
    started = 0.0
    for i in range(warmup + messages):
        if i == warmup:
            started = time.perf_counter()
        before = len(arrived)
        t0 = time.perf_counter()
        await kit.process_inbound(
            InboundMessage(
                channel_id="src",
                sender_id="bench-user",
                content=TextContent(body=f"message {i}"),
                idempotency_key=f"{variant}-{i}",
            ),
            room_id="bench",
        )
        while len(arrived) == before:
            await asyncio.sleep(0)
        if i >= warmup:
            latencies.append(arrived[-1] - t0)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "variant": variant,
        "messages": messages,
        "events_per_s": messages / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": ordered[round(0.99 * (len(ordered) - 1))] * 1000,
    }


async def run_senders(senders: int, messages: int, warmup: int) -> dict:
    """``senders`` tasks send at once into the one room (the library's own concurrency: asyncio)."""
    from roomkit import HTTPChannel, InboundMessage, MockHTTPProvider, RoomKit, TextContent, WebSocketChannel

    kit = RoomKit()
    kit.register_channel(HTTPChannel("src", provider=MockHTTPProvider()))
    ws = WebSocketChannel("ws")
    arrived: dict[str, float] = {}

    async def on_send(connection_id, event) -> None:
        arrived[event.content.body] = time.perf_counter()

    ws.register_connection("viewer", on_send)
    kit.register_channel(ws)
    await kit.create_room(room_id="bench")
    await kit.attach_channel("bench", "src")
    await kit.attach_channel("bench", "ws")

    async def send(i: int) -> float:
        t0 = time.perf_counter()
        await kit.process_inbound(
            InboundMessage(
                channel_id="src",
                sender_id="bench-user",
                content=TextContent(body=f"message {i}"),
                idempotency_key=f"s-{i}",
            ),
            room_id="bench",
        )
        return t0

    for i in range(warmup):
        await send(-1 - i)
    per = messages // senders
    sent: dict[str, float] = {}

    async def sender(k: int) -> None:
        for i in range(k * per, (k + 1) * per):
            sent[f"message {i}"] = await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(senders)))
    while any(body not in arrived for body in sent):
        await asyncio.sleep(0)
    elapsed = max(arrived[body] for body in sent) - started
    latencies = sorted(arrived[body] - t0 for body, t0 in sent.items())
    return {
        "variant": f"senders-{senders}",
        "messages": per * senders,
        "events_per_s": per * senders / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[round(0.99 * (len(latencies) - 1))] * 1000,
    }


def main() -> None:
    messages, warmup, variants = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    results = [
        asyncio.run(run_senders(int(v.split("-")[1]), messages, warmup) if v.startswith("senders-") else run(v, messages, warmup))
        for v in variants
    ]
    print(json.dumps({"db": "roomkit-in-memory", "results": results}))


if __name__ == "__main__":
    main()
