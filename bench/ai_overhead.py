#!/usr/bin/env python
"""AI overhead: from the user's message to the first streamed token at the socket, minus the model's own time.

A web-chat room with one agent on an OpenAI-compatible fake server (real HTTP,
the real ``openai`` SDK) that waits a fixed time before its first token. Each
message goes through ``process_inbound``; the router marks the agent; after
commit the generation is enqueued on the in-process worker pool (the embedded
default) and streams; a real ChatConsumer on an event loop in another thread
(as Daphne serves sockets) records when the first ``stream_chunk`` arrives.
Overhead = that time − the fake's time to first token. Messages are sent one
after another, each after the previous reply's ``stream_end``. Also shown: how
long the ``process_inbound`` call took (it includes the on-commit work: the
router's mark, the generation row, the enqueue) and when the request reached
the provider.

Run: ``.venv/bin/python bench/ai_overhead.py [--messages N] [--ttft-ms T] [--db sqlite,postgres] [--runs R]``
(``--runs``: each database R times, interleaved, then the median of each column).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import ChatSocket, percentile, prepare_database, run_child, wait_until  # noqa: E402


class _StreamWatcher:
    """When each streamed reply's first chunk and its end reached the socket."""

    def __init__(self, token: str) -> None:
        self.first_chunk: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.order: list[str] = []
        self.socket = ChatSocket(token, self._frame)

    def _frame(self, frame: dict, at: float) -> None:
        if frame.get("type") == "stream_chunk" and frame["stream_id"] not in self.first_chunk:
            self.first_chunk[frame["stream_id"]] = at
            self.order.append(frame["stream_id"])
        elif frame.get("type") == "stream_end":
            self.ended[frame["stream_id"]] = at

    def wait_stream(self, index: int) -> str:
        wait_until(lambda: len(self.order) > index and self.order[index] in self.ended, f"reply {index} never finished")
        return self.order[index]

    def close(self) -> None:
        self.socket.close()


def child(db: str, messages: int, warmup: int, ttft_ms: float) -> None:
    os.environ["DATABASE_URL"] = prepare_database(db, "roomkit_ai_bench")
    os.environ.pop("REDIS_URL", None)
    os.environ["ROOMKIT_TASK_MODE"] = "thread"
    os.environ["DJANGO_SETTINGS_MODULE"] = "roomkit_project.settings"
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    import logging

    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from agents.models import Agent
    from agents.services import agent_save
    from channels_app.webchat.sessions import chat_session_start
    from rooms.enums import ChannelCategory, ChannelType
    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import Channel
    from tests.agents.fakes import FakeOpenAIServer, Turn

    with FakeOpenAIServer(
        default=Turn(text="A short streamed answer from the fake model.", ttft=ttft_ms / 1000, chunk=8)
    ) as server:
        agent_save(
            Agent(id="bench-agent", name="Bench", provider="openai", model="fake", base_url=server.base_url, memory_window=20)
        )
        Channel.objects.update_or_create(
            pk=settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            defaults={
                "channel_type": ChannelType.WEBSOCKET,
                "category": ChannelCategory.TRANSPORT,
                "config": {"attach_on_create": ["bench-agent"]},
            },
        )
        session = chat_session_start(display_name="Bench", open_now=True)
        socket = _StreamWatcher(session.token)
        overheads: list[float] = []
        calls: list[float] = []
        to_provider: list[float] = []
        for i in range(warmup + messages):
            t0 = time.perf_counter()
            process_inbound(
                InboundMessage(
                    channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
                    room_id=session.room_id,
                    participant_id=session.participant_id,
                    sender=session.participant_id,
                    text=f"question {i}",
                )
            )
            t1 = time.perf_counter()
            stream_id = socket.wait_stream(i)
            if i >= warmup:
                overheads.append((socket.first_chunk[stream_id] - t0) * 1000 - ttft_ms)
                calls.append((t1 - t0) * 1000)
                to_provider.append((server.arrivals[i] - t0) * 1000)
        socket.close()
    print(
        json.dumps(
            {
                "db": db,
                "messages": messages,
                "p50": statistics.median(overheads),
                "p90": percentile(overheads, 90),
                "p99": percentile(overheads, 99),
                "min": min(overheads),
                "call_p50": statistics.median(calls),
                "provider_p50": statistics.median(to_provider),
            }
        )
    )


def _row(label: str, r: dict) -> str:
    return (
        f"{label:<14} {r['p50']:>8.2f} {r['p90']:>8.2f} {r['p99']:>8.2f} {r['min']:>8.2f}"
        f" {r['call_p50']:>17.2f} {r['provider_p50']:>16.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per database, interleaved (this machine is noisy: compare medians of runs)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.messages, args.warmup, args.ttft_ms)
        return
    print(f"AI overhead: user message → first streamed token at the socket, minus the fake model's {args.ttft_ms:.0f} ms")
    print(f"{args.messages} messages after {args.warmup} warm-up, one room, sequential, in-process workers (goal p50 < 20 ms)\n")
    print(
        f"{'database':<14} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'min ms':>8}"
        f" {'inbound call p50':>17} {'to provider p50':>16}"
    )
    dbs = args.db.split(",")
    results: dict[str, list[dict]] = {db: [] for db in dbs}
    for run in range(args.runs):
        for db in dbs:
            r = run_child(__file__, db, {"messages": args.messages, "warmup": args.warmup, "ttft_ms": args.ttft_ms})
            if r is not None:
                results[db].append(r)
                print(_row(db if args.runs == 1 else f"{db} #{run + 1}", r), flush=True)
    if args.runs > 1:
        print("\nmedian of the runs' values:")
        for db, runs in results.items():
            if runs:
                print(_row(db, {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in ("db", "messages")}))


if __name__ == "__main__":
    main()
