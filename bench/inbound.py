#!/usr/bin/env python
"""Inbound throughput: messages through ``process_inbound`` into one room.

Each message is a signed-webhook-like inbound from one sender, stored durably
(committed) with its seq, planned deliveries and fan-out. Two variants:

- ``ws``: one WebSocket recipient bound and connected (an in-process
  ChatConsumer); a message counts when its event frame reached the socket.
- ``transport``: the same, plus two HTTP transport recipients, so each message
  also writes two Delivery rows (the outbox; sending is the workers' job and
  is not timed here).

Run: ``.venv/bin/python bench/inbound.py [--messages N] [--db sqlite,postgres]``.
Each database runs in a child process with its own settings; PostgreSQL uses
a scratch database ``roomkit_bench`` on 127.0.0.1:5432.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_URL = "postgres://postgres@127.0.0.1:5432/roomkit_bench"


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def _prepare_database(db: str) -> str:
    if db == "sqlite":
        path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS roomkit_bench")
        conn.execute("CREATE DATABASE roomkit_bench")
    return PG_BENCH_URL


async def _run_variant(variant: str, messages: int, warmup: int) -> dict:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from roomkit_project.asgi import application
    from rooms.chat_sessions import chat_session_start
    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import Channel, Delivery
    from rooms.services import channel_attach

    @sync_to_async
    def setup() -> tuple[str, str]:
        src = Channel(id=f"bench-src-{variant}", channel_type="webhook", provider="http")
        src.set_secrets({"signing_secret": "bench"})
        src.save()
        session = chat_session_start(display_name="Bench viewer")
        channel_attach(room_id=session.room_id, channel_id=src.id, address="bench-user")
        if variant == "transport":
            for n in (1, 2):
                out = Channel(id=f"bench-out-{n}", channel_type="sms", provider="http",
                              config={"url": "http://127.0.0.1:9/unused"})
                out.save()
                channel_attach(room_id=session.room_id, channel_id=out.id, address=f"+1555000000{n}")
        return session.room_id, session.token

    room_id, token = await setup()
    comm = WebsocketCommunicator(application, f"/ws/chat/?token={token}",
                                 headers=[(b"origin", b"http://127.0.0.1:8000")])
    connected, _ = await comm.connect()
    assert connected, "socket did not connect"

    inbound = sync_to_async(process_inbound)
    latencies: list[float] = []
    first_seq = None
    started = 0.0
    for i in range(warmup + messages):
        if i == warmup:
            started = time.perf_counter()
        t0 = time.perf_counter()
        result = await inbound(InboundMessage(channel_id=f"bench-src-{variant}", sender="bench-user",
                                              text=f"message {i}", provider_message_id=f"{variant}-{i}"))
        frame = await comm.receive_json_from(timeout=5)
        t1 = time.perf_counter()
        assert frame["type"] == "event" and frame["event"]["seq"] == result.seq, frame
        if i >= warmup:
            latencies.append(t1 - t0)
            first_seq = first_seq or result.seq
    elapsed = time.perf_counter() - started
    await comm.disconnect()

    @sync_to_async
    def deliveries() -> int:
        return Delivery.objects.filter(event__room_id=room_id).count()

    return {
        "variant": variant,
        "messages": messages,
        "events_per_s": messages / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "deliveries_written": await deliveries(),
    }


def child(db: str, messages: int, warmup: int, variants: list[str]) -> None:
    os.environ["DATABASE_URL"] = _prepare_database(db)
    os.environ.pop("REDIS_URL", None)
    # Rows are the outbox; executing deliveries is the workers' job, not timed here.
    os.environ["ROOMKIT_TASK_MODE"] = "off"
    os.environ["DJANGO_SETTINGS_MODULE"] = "roomkit_project.settings"
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = [asyncio.run(_run_variant(v, messages, warmup)) for v in variants]
    print(json.dumps({"db": db, "results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--variants", default="ws,transport")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.child:
        child(args.child, args.messages, args.warmup, variants)
        return
    print(f"inbound bench: {args.messages} messages per run after {args.warmup} warm-up, one room, sequential\n")
    print(f"{'database':<10} {'variant':<28} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for db in args.db.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--child", db, "--messages", str(args.messages),
             "--warmup", str(args.warmup), "--variants", ",".join(variants)],
            capture_output=True, text=True, cwd=ROOT,
        )
        if out.returncode != 0:
            print(f"{db}: failed\n{out.stderr[-3000:]}")
            continue
        report = json.loads(out.stdout.strip().splitlines()[-1])
        for r in report["results"]:
            label = "1 WebSocket recipient" if r["variant"] == "ws" else "+ 2 transport recipients"
            print(f"{db:<10} {label:<28} {r['events_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")


if __name__ == "__main__":
    main()
