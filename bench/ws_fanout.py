#!/usr/bin/env python
"""WebSocket fan-out: N sockets in one room, one sender; ours beside a raw Channels relay.

Two real Daphne processes on 127.0.0.1, started here:

- **ours**: the project's ASGI app (``/ws/chat/``, embedded default: SQLite
  and our in-memory channel layer) on a scratch database. One room, one
  sender and N receivers, each its own participant with its own token. The
  sender posts ``{"type": "message", …}`` frames: each is stored through the
  inbound path (a durable SQLite commit) and fanned out to the room's sockets.
- **raw**: ``bench/raw_relay_asgi.py``: a trivial ``AsyncJsonWebsocketConsumer``
  that joins one group and relays every frame with ``group_send`` on the stock
  ``channels.layers.InMemoryChannelLayer`` (nothing stored).

The same client harness drives both: real WebSocket clients (the
``websockets`` package) spread over one asyncio loop in this process, a
sender socket plus N receivers. Latency is from the sender's ``send`` call to
the frame being received (and parsed) by each receiver, on this process's
clock. For each N:

- latency phase: the sender sends at a fixed rate that keeps the raw relay at
  about a quarter of its capacity (``RATES``), so neither server is saturated;
  p50/p99 over every (message, receiver) pair;
- throughput phase: the sender sends a burst as fast as it can (``BURSTS``,
  below the stock layer's 100-message channel capacity, so the raw relay
  drops nothing) and we time until every receiver has every message:
  deliveries/s = N × messages / (last arrival − first send).

Receivers join incrementally (10, then 90 more, then 400 more): in our room
each newcomer is announced to everyone online (presence), and the bench waits
for the room to go quiet before measuring.

Run: ``.venv/bin/python bench/ws_fanout.py [--sizes 10,100,500]`` (about two
minutes). ``--profile FILE`` runs our server under yappi and writes its
per-function stats there at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, percentile, scratch_project  # noqa: E402

ORIGIN = "http://127.0.0.1:8000"
PYTHON = sys.executable
# Messages per second in the latency phase, per N: the raw relay spends about
# 0.5 ms per delivered frame, so N × rate × 0.5 ms ≈ 25 % of one core.
RATES = {10: 50.0, 100: 5.0, 500: 1.0}
LATENCY_SECONDS = 4.0
BURSTS = {10: 90, 100: 90, 500: 20}
CONNECT_CONCURRENCY = 50


class Server:
    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix=f"ws-fanout-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [*args, "-b", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _prepare_ours(tmp: Path, receivers: int) -> tuple[dict[str, str], str, list[str]]:
    """A migrated scratch database with one room: (env for the server, sender token, receiver tokens)."""
    env = scratch_project(tmp)
    from django.conf import settings

    from channels_app.webchat.sessions import chat_session_start
    from channels_app.webchat.tokens import chat_token_issue
    from rooms.models import Participant

    session = chat_session_start(display_name="Sender", open_now=True)
    viewers = [
        Participant(room_id=session.room_id, channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID, display_name=f"Viewer {i}")
        for i in range(receivers)
    ]
    for p in viewers:
        p.address = p.id
    Participant.objects.bulk_create(viewers)
    tokens = [chat_token_issue(room_id=session.room_id, participant_id=p.id) for p in viewers]
    return env, session.token, tokens


class Harness:
    """One sender and a growing set of receivers on one server, all on this loop."""

    def __init__(self, name: str, pid: int, url_for, message_for, extract, resume: bool) -> None:
        self.name = name
        self.pid = pid
        self.url_for = url_for  # index -> URL (-1: the sender)
        self.message_for = message_for  # mid -> frame text
        self.extract = extract  # frame text -> mid | None
        self.resume = resume
        self.receivers: list = []
        self.tasks: list[asyncio.Task] = []
        self.sender = None
        self.sent: dict[str, float] = {}
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.frames = 0
        self.last_frame = time.monotonic()
        self.last_seq = 0
        self.counter = 0

    async def _connect(self, index: int):
        from websockets.asyncio.client import connect

        ws = await connect(
            self.url_for(index), origin=ORIGIN, compression=None, max_size=None, ping_interval=None, open_timeout=60
        )
        if self.resume:
            await ws.send(json.dumps({"type": "resume", "after_seq": self.last_seq}))
        return ws

    async def _read(self, ws, record: bool) -> None:
        extract, arrivals = self.extract, self.arrivals
        try:
            async for text in ws:
                now = time.perf_counter()
                self.frames += 1
                self.last_frame = time.monotonic()
                mid = extract(text) if record else None
                if mid is not None:
                    arrivals[mid].append(now)
                elif not record and self.resume:
                    frame = json.loads(text)
                    if frame.get("type") == "ack" and frame.get("seq"):
                        self.last_seq = max(self.last_seq, frame["seq"])
        except Exception:
            pass

    async def grow(self, n: int) -> float:
        started = time.perf_counter()
        if self.sender is None:
            self.sender = await self._connect(-1)
            self.tasks.append(asyncio.ensure_future(self._read(self.sender, record=False)))
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(index: int):
            async with gate:
                return await self._connect(index)

        new = await asyncio.gather(*(one(i) for i in range(len(self.receivers), n)))
        for ws in new:
            self.tasks.append(asyncio.ensure_future(self._read(ws, record=True)))
        self.receivers.extend(new)
        await self.quiet()
        return time.perf_counter() - started

    async def quiet(self, seconds: float = 0.5, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_frame >= seconds:
                return
            await asyncio.sleep(0.05)

    def _mid(self) -> str:
        self.counter += 1
        return f"{self.name}-{self.counter}"

    async def _wait_all(self, mids: list[str], timeout: float) -> bool:
        n = len(self.receivers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(self.arrivals[m]) >= n for m in mids):
                return True
            await asyncio.sleep(0.005)
        return False

    async def latency_phase(self, rate: float, seconds: float) -> dict:
        count = max(3, int(rate * seconds))
        mids = [self._mid() for _ in range(count)]
        start = time.perf_counter() + 0.05
        for i, mid in enumerate(mids):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            text = self.message_for(mid)
            self.sent[mid] = time.perf_counter()
            await self.sender.send(text)
        complete = await self._wait_all(mids, timeout=60)
        lat = [(t - self.sent[m]) * 1000 for m in mids for t in self.arrivals[m]]
        return {
            "messages": count,
            "complete": complete,
            "p50_ms": statistics.median(lat),
            "p99_ms": percentile(lat, 99),
        }

    async def throughput_phase(self, messages: int) -> dict:
        await self.quiet(0.3)
        mids = [self._mid() for _ in range(messages)]
        texts = [self.message_for(m) for m in mids]
        cpu_before = _cpu_seconds(self.pid)
        first = time.perf_counter()
        for mid, text in zip(mids, texts, strict=True):
            self.sent[mid] = time.perf_counter()
            await self.sender.send(text)
        complete = await self._wait_all(mids, timeout=90)
        server_cpu = _cpu_seconds(self.pid) - cpu_before
        arrivals = [t for m in mids for t in self.arrivals[m]]
        elapsed = max(arrivals) - first
        lat = [(t - self.sent[m]) * 1000 for m in mids for t in self.arrivals[m]]
        return {
            "messages": messages,
            "complete": complete,
            "deliveries": len(arrivals),
            "deliveries_per_s": len(arrivals) / elapsed,
            "server_cpu_us_per_delivery": server_cpu / len(arrivals) * 1e6,
            "burst_p50_ms": statistics.median(lat),
            "burst_p99_ms": percentile(lat, 99),
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for ws in [self.sender, *self.receivers]:
            if ws is not None:
                ws.transport.abort()


def _extract_ours(text: str) -> str | None:
    frame = json.loads(text)
    if frame.get("type") != "event":
        return None
    body = frame["event"]["content"].get("body", "")
    return body[2:] if body.startswith("b:") else None


def _extract_raw(text: str) -> str | None:
    return json.loads(text).get("mid")


async def run(sizes: list[int], ours: Server, raw: Server, sender_token: str, tokens: list[str]) -> list[dict]:
    ours_port, raw_port = ours.port, raw.port
    ours = Harness(
        "ours",
        ours.proc.pid,
        lambda i: f"ws://127.0.0.1:{ours_port}/ws/chat/?token={sender_token if i < 0 else tokens[i]}",
        lambda mid: json.dumps({"type": "message", "text": f"b:{mid}", "client_msg_id": mid}),
        _extract_ours,
        resume=True,
    )
    raw = Harness(
        "raw",
        raw.proc.pid,
        lambda i: f"ws://127.0.0.1:{raw_port}/ws/relay/",
        lambda mid: json.dumps({"mid": mid, "text": f"b:{mid}"}),
        _extract_raw,
        resume=False,
    )
    rows = []
    try:
        for n in sizes:
            for harness in (raw, ours):
                connect_s = await harness.grow(n)
                lat = await harness.latency_phase(RATES.get(n, 500.0 / n), LATENCY_SECONDS)
                tput = await harness.throughput_phase(BURSTS.get(n, max(10, 10_000 // n)))
                rows.append({"n": n, "server": harness.name, "connect_s": connect_s, **lat, **tput})
                print(
                    f"  N={n:<4} {harness.name:<5} {tput['deliveries_per_s']:>9,.0f} deliveries/s  "
                    f"p50 {lat['p50_ms']:6.2f} ms  p99 {lat['p99_ms']:7.2f} ms  "
                    f"(server CPU {tput['server_cpu_us_per_delivery']:.0f} µs/delivery; "
                    f"burst p99 {tput['burst_p99_ms']:.0f} ms; joined in {connect_s:.1f} s)",
                    flush=True,
                )
    finally:
        await ours.close()
        await raw.close()
    return rows


def _table(rows: list[dict]) -> str:
    by = {(r["n"], r["server"]): r for r in rows}
    lines = [
        "| N | server | deliveries/s (burst) | server CPU per delivery (µs) | p50 latency (ms) | p99 latency (ms) "
        "| rate (msg/s) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["n"] for r in rows}):
        for server, label in (("raw", "raw Channels relay"), ("ours", "RoomKit /ws/chat/")):
            r = by.get((n, server))
            if r is None:
                continue
            flag = "" if r["complete"] else " (incomplete)"
            lines.append(
                f"| {n} | {label} | {r['deliveries_per_s']:,.0f}{flag} | {r['server_cpu_us_per_delivery']:.0f} "
                f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {RATES.get(n, 500.0 / n):g} |"
            )
        if (n, "raw") in by and (n, "ours") in by:
            o, w = by[(n, "ours")], by[(n, "raw")]
            lines.append(
                f"| {n} | ours ÷ raw | ×{o['deliveries_per_s'] / w['deliveries_per_s']:.1f} "
                f"| ×{o['server_cpu_us_per_delivery'] / w['server_cpu_us_per_delivery']:.2f} "
                f"| ×{o['p50_ms'] / w['p50_ms']:.2f} | ×{o['p99_ms'] / w['p99_ms']:.2f} | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--profile", metavar="FILE", help="run our server under yappi; write its stats to FILE")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ws-fanout-") as tmp:
        env, sender_token, tokens = _prepare_ours(Path(tmp), max(sizes))
        ours_cmd = [PYTHON, "-m", "daphne"]
        if args.profile:
            ours_cmd = [PYTHON, str(ROOT / "bench" / "ws_fanout.py"), "--serve-profiled", args.profile]
        ours = Server("ours", [*ours_cmd, "roomkit_project.asgi:application"], env)
        raw_env = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
        raw = Server("raw", [PYTHON, "-m", "daphne", "bench.raw_relay_asgi:application"], raw_env)
        try:
            ours.wait_ready()
            raw.wait_ready()
            print(f"fan-out over real sockets on 127.0.0.1 ({os.cpu_count()} CPUs); sizes {sizes}", flush=True)
            rows = asyncio.run(run(sizes, ours, raw, sender_token, tokens))
        finally:
            ours.stop()
            raw.stop()
    print()
    print(_table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"\n(total {time.monotonic() - started:.0f} s)")


def serve_profiled(stats_file: str, app: str) -> None:
    """Daphne under yappi (CPU clock, all threads); stats written when Daphne stops (SIGTERM)."""
    import yappi
    from daphne.cli import CommandLineInterface

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False)
    try:
        CommandLineInterface().run([*sys.argv[4:], app])
    finally:
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.sort("tsub")
        with open(stats_file, "w") as fh:
            stats.print_all(
                out=fh,
                columns={0: ("name", 110), 1: ("ncall", 12), 2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)},
            )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-profiled":
        # bench/ws_fanout.py --serve-profiled FILE APP -b HOST -p PORT
        sys.path.insert(0, str(ROOT))
        serve_profiled(sys.argv[2], sys.argv[3])
    else:
        main()
