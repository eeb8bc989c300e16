#!/usr/bin/env python
"""Inbound throughput: messages through ``process_inbound`` into one room.

Each message is a signed-webhook-like inbound from one sender, stored durably
(committed) with its seq, planned deliveries and fan-out. Two variants:

- ``ws``: one WebSocket recipient bound and connected (a real ChatConsumer on
  an event loop in another thread, as Daphne runs sockets beside the sync
  threads that handle webhooks); latency is from the call to the moment the
  event frame reached the socket, and the run ends when the last one has.
- ``transport``: the same, plus two HTTP transport recipients, so each message
  also writes two Delivery rows (the outbox; sending is the workers' job and
  is not timed here).

Run: ``.venv/bin/python bench/inbound.py [--messages N] [--db sqlite,postgres]``.
Each database runs in a child process with its own settings; PostgreSQL uses
a scratch database ``roomkit_bench`` on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import ChatSocket, percentile, prepare_database, run_child, wait_until  # noqa: E402


class _EventArrivals:
    """Arrival time of each stored event's frame at the socket, by seq."""

    def __init__(self, token: str) -> None:
        self.arrived: dict[int, float] = {}
        self.socket = ChatSocket(token, self._frame)

    def _frame(self, frame: dict, at: float) -> None:
        if frame.get("type") == "event":
            self.arrived[frame["event"]["seq"]] = at

    def wait_for(self, seq: int) -> None:
        wait_until(lambda: seq in self.arrived, f"seq {seq} never reached the socket")

    def close(self) -> None:
        self.socket.close()


def _run_variant(variant: str, messages: int, warmup: int) -> dict:
    from channels_app.webchat.sessions import chat_session_start
    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import Channel, Delivery
    from rooms.services import channel_attach

    src = Channel(id=f"bench-src-{variant}", channel_type="webhook", provider="http")
    src.set_secrets({"signing_secret": "bench"})
    src.save()
    session = chat_session_start(display_name="Bench viewer", open_now=True)
    channel_attach(room_id=session.room_id, channel_id=src.id, address="bench-user")
    if variant == "transport":
        for n in (1, 2):
            Channel.objects.create(
                id=f"bench-out-{n}", channel_type="sms", provider="http", config={"url": "http://127.0.0.1:9/unused"}
            )
            channel_attach(room_id=session.room_id, channel_id=f"bench-out-{n}", address=f"+1555000000{n}")
    socket = _EventArrivals(session.token)

    sent: dict[int, float] = {}
    last_seq = 0
    for i in range(warmup + messages):
        if i == warmup:
            socket.wait_for(last_seq)
            started = time.perf_counter()
        t0 = time.perf_counter()
        result = process_inbound(
            InboundMessage(channel_id=src.id, sender="bench-user", text=f"message {i}", provider_message_id=f"{variant}-{i}")
        )
        last_seq = result.seq
        if i >= warmup:
            sent[result.seq] = t0
    socket.wait_for(last_seq)
    elapsed = socket.arrived[last_seq] - started
    socket.close()
    latencies = [socket.arrived[seq] - t0 for seq, t0 in sent.items()]
    return {
        "variant": variant,
        "messages": messages,
        "events_per_s": messages / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "deliveries_written": Delivery.objects.filter(event__room_id=session.room_id).count(),
    }


def _run_senders(senders: int, messages: int, warmup: int) -> dict:
    """``senders`` threads of one process send at once (as concurrent webhook requests are
    served by Daphne's worker threads), into the same room, the socket watching."""
    import threading

    from django.db import connection

    from channels_app.webchat.sessions import chat_session_start
    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import Channel
    from rooms.services import channel_attach

    src = Channel.objects.create(id=f"bench-src-senders-{senders}", channel_type="webhook", provider="http")
    session = chat_session_start(display_name="Bench viewer", open_now=True)
    channel_attach(room_id=session.room_id, channel_id=src.id, address="bench-user")
    socket = _EventArrivals(session.token)

    def send(i: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        result = process_inbound(
            InboundMessage(channel_id=src.id, sender="bench-user", text=f"message {i}", provider_message_id=f"s{senders}-{i}")
        )
        return result.seq, t0

    for i in range(warmup):
        last_seq, _ = send(-1 - i)
    socket.wait_for(last_seq)
    sent: dict[int, float] = {}
    per = messages // senders
    go = threading.Barrier(senders + 1)

    def sender(k: int) -> None:
        go.wait()
        mine = [send(i) for i in range(k * per, (k + 1) * per)]
        sent.update(mine)
        connection.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    go.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    last_seq = max(sent)
    socket.wait_for(last_seq)
    elapsed = max(socket.arrived[seq] for seq in sent) - started
    socket.close()
    latencies = [socket.arrived[seq] - t0 for seq, t0 in sent.items()]
    return {
        "variant": f"senders-{senders}",
        "messages": per * senders,
        "events_per_s": per * senders / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "deliveries_written": 0,
    }


def _writer(room_id: str, channel_id: str, first: int, count: int, go_at: float) -> None:
    """One of K concurrent writer processes (as K webhook workers would be)."""
    from rooms.inbound import InboundMessage, process_inbound

    process_inbound(
        InboundMessage(channel_id=channel_id, sender="bench-user", text="warm-up", provider_message_id=f"w-warm-{first}")
    )
    while time.time() < go_at:
        time.sleep(0.001)
    latencies = []
    started = time.time()
    for i in range(first, first + count):
        t0 = time.perf_counter()
        process_inbound(
            InboundMessage(channel_id=channel_id, sender="bench-user", text=f"message {i}", provider_message_id=f"w-{i}")
        )
        latencies.append(time.perf_counter() - t0)
    print(json.dumps({"started": started, "finished": time.time(), "latencies": latencies}))


def _run_writers(writers: int, messages: int) -> dict:
    """K processes send ``messages`` in all into one room at once; durable events/s and call latency."""
    from channels_app.webchat.sessions import chat_session_start
    from rooms.models import Channel, Room, RoomEvent
    from rooms.services import channel_attach

    src = Channel.objects.create(id="bench-src-writers", channel_type="webhook", provider="http")
    session = chat_session_start(display_name="Bench viewer", open_now=True)
    channel_attach(room_id=session.room_id, channel_id=src.id, address="bench-user")
    per = messages // writers
    go_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", session.room_id, src.id, str(k * per), str(per), str(go_at)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=os.environ.copy(),
        )
        for k in range(writers)
    ]
    reports = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    elapsed = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    latencies = [x for r in reports for x in r["latencies"]]
    seqs = list(RoomEvent.objects.filter(room_id=session.room_id).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)), "seq must stay gapless under concurrent writers"
    assert Room.objects.get(pk=session.room_id).last_seq == len(seqs)
    assert RoomEvent.objects.filter(room_id=session.room_id, provider_message_id__startswith="w-").count() == writers * (per + 1)
    return {
        "variant": f"writers-{writers}",
        "messages": writers * per,
        "events_per_s": writers * per / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "deliveries_written": 0,
    }


def child(db: str, messages: int, warmup: int, variants: list[str]) -> None:
    os.environ["DATABASE_URL"] = prepare_database(db, "roomkit_bench")
    os.environ.pop("REDIS_URL", None)
    # Rows are the outbox; executing deliveries is the workers' job, not timed here.
    os.environ["ROOMKIT_TASK_MODE"] = "off"
    os.environ["DJANGO_SETTINGS_MODULE"] = "roomkit_project.settings"
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = []
    for v in variants:
        if v.startswith("writers-"):
            results.append(_run_writers(int(v.split("-")[1]), messages))
        elif v.startswith("senders-"):
            results.append(_run_senders(int(v.split("-")[1]), messages, warmup))
        else:
            results.append(_run_variant(v, messages, warmup))
    print(json.dumps({"db": db, "results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--variants", default="ws,transport,senders-16,writers-4")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--writer", nargs=5, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")
        import django

        django.setup()
        room_id, channel_id, first, count, go_at = args.writer
        _writer(room_id, channel_id, int(first), int(count), float(go_at))
        return
    variants = args.variants.split(",")
    if args.child:
        child(args.child, args.messages, args.warmup, variants)
        return
    print(f"inbound bench: {args.messages} messages per run after {args.warmup} warm-up, one room\n")
    print(f"{'database':<10} {'variant':<28} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for db in args.db.split(","):
        report = run_child(__file__, db, {"messages": args.messages, "warmup": args.warmup, "variants": ",".join(variants)})
        if report is None:
            continue
        for r in report["results"]:
            labels = {"ws": "1 WebSocket recipient", "transport": "+ 2 transport recipients"}
            variant = r["variant"]
            kind, _, count = variant.partition("-")
            label = labels.get(variant) or (
                f"{count} writer processes, no socket" if kind == "writers" else f"{count} concurrent senders"
            )
            print(f"{db:<10} {label:<28} {r['events_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")


if __name__ == "__main__":
    main()
