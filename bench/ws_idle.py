#!/usr/bin/env python
"""Latency into one room while N idle chat sockets are open in the same server process.

One real server process, started here as production starts it
(``manage.py serve --no-workers``: Daphne, the embedded default, a scratch
SQLite database and our in-memory channel layer), with a thin wrapper that
only observes: it times every garbage collection (``gc.callbacks``), watches
the event loop for stalls, and on ``SIGUSR1`` writes a snapshot of the
process (RSS, Python allocations, GC pauses, open connections, the layer's
channels and groups, room hubs, presence) to a file.

- ``N`` idle sockets: real ``websockets`` clients, each a visitor alone in
  its own room (as N people with the chat page open), spread over client
  processes of their own, so that client cost does not count as the server's;
- one active room with a sender socket and a receiver socket, in this
  process: the sender posts ``{"type": "message", …}`` frames at a fixed rate
  (each goes through the inbound path, a durable SQLite commit, and is fanned
  out); latency is from the sender's ``send`` to the event frame's arrival at
  the receiver. p50/p90/p99/max over every message, plus how many GC passes
  and loop stalls happened meanwhile;
- memory: RSS and Python-level allocations (``sys.getallocatedblocks``; with
  ``--tracemalloc`` also traced bytes) before the idle sockets connect, with
  them open (per socket = difference / N), and after they all closed, for
  ``--cycles`` connect/close rounds (a second round that does not grow RSS
  shows that freed memory is reused rather than leaked);
- at the end, an audit: the server unfreezes everything ``gc.freeze()`` put
  out of the collector's reach and collects; the unreachable objects it finds
  are garbage that freezing kept (cycles among objects that were alive at a
  freeze), i.e. what the GC policy leaks.

Run: ``.venv/bin/python bench/ws_idle.py [--sizes 5000,10000]`` (about two
minutes per size).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, percentile, scratch_project  # noqa: E402

PYTHON = sys.executable
ORIGIN = "http://127.0.0.1:8000"
SOCKETS_PER_CLIENT_PROCESS = 2500
CONNECT_CONCURRENCY = 16  # per client process: handshakes in flight stay well within Daphne's 5 s handshake timeout


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _pymalloc_stats() -> dict[str, int]:
    """pymalloc's arenas: how many are mapped and how many bytes of them are in use (``sys._debugmallocstats``)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)  # it writes to the C stderr
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    stats = {}
    for key, label in (
        ("arenas", "# arenas allocated current"),
        ("bytes_in_use", "# bytes in allocated blocks"),
        ("bytes_free_in_pools", "# bytes in available blocks"),
    ):
        for line in text.splitlines():
            if line.startswith(label):
                stats[key] = int(line.rsplit("=", 1)[1].replace(",", ""))
    return stats


class _ServerProbe:
    """Observes the server process; never changes what it does."""

    def __init__(self, stats_file: str) -> None:
        import gc

        self.stats_file = stats_file
        # (wall time, generation, ms, ms of CPU the collecting thread got meanwhile)
        # Flat arrays of floats, not lists of tuples: recording allocates no
        # Python objects, so the server's allocation counts are its own.
        self.gc_passes = array.array("d")  # per pass: wall time, generation, ms, ms of CPU meanwhile
        self.stalls = array.array("d")  # per stall: wall time, ms late, ms of CPU meanwhile
        self.slow_callbacks: list[tuple[float, float, str]] = []  # with --slow-callbacks
        self.callback_ms: dict[str, list] = {}  # callback name -> [calls, total ms, max ms]
        self._gc_started = self._gc_cpu = 0.0
        self.daphne = None
        self.loop = None
        self.baseline_snapshot = None  # with --tracemalloc: taken at the first snapshot request
        self.baseline_pymalloc: dict | None = None
        self.last_dump_end = 0.0  # perf_counter at the end of the last snapshot or audit
        gc.callbacks.append(self._on_gc)
        signal.signal(signal.SIGUSR1, self._dump)
        signal.signal(signal.SIGUSR2, self._audit)

        import daphne.server

        probe = self
        original_init = daphne.server.Server.__init__

        def init(server, *args, **kwargs):
            original_init(server, *args, **kwargs)
            probe.daphne = server

        daphne.server.Server.__init__ = init

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started, self._gc_cpu = time.perf_counter(), time.thread_time()
        else:
            ms = (time.perf_counter() - self._gc_started) * 1000
            self.gc_passes.extend((time.time(), info["generation"], ms, (time.thread_time() - self._gc_cpu) * 1000))

    async def watch_loop(self) -> None:
        """Record every time the loop woke this task more than 10 ms late: something held the loop.

        With the CPU time the loop's thread used meanwhile: a stall the
        thread spent running is work on the loop; one it spent waiting is
        the machine's other processes or the GIL held by another thread.
        """
        self.loop = asyncio.get_running_loop()
        tick = 0.005
        while True:
            started, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(tick)
            late = (time.perf_counter() - started - tick) * 1000
            if late > 10 and self.last_dump_end < started:  # a snapshot for the bench is not the server's doing
                self.stalls.extend((time.time(), late, (time.thread_time() - cpu) * 1000))

    def time_callbacks(self, slow_ms: float) -> None:
        """Diagnostics (``--slow-callbacks``): record every loop callback that runs longer than ``slow_ms``."""
        import asyncio.events

        original = asyncio.events.Handle._run
        probe = self

        def _run(handle) -> None:
            callback = handle._callback
            started, cpu = time.perf_counter(), time.thread_time()
            original(handle)
            ms = (time.perf_counter() - started) * 1000
            name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
            totals = probe.callback_ms.setdefault(name, [0, 0.0, 0.0])
            totals[0] += 1
            totals[1] += ms
            totals[2] = max(totals[2], ms)
            if ms > slow_ms:
                cpu_ms = (time.thread_time() - cpu) * 1000
                probe.slow_callbacks.append((time.time(), ms, f"{name} ({cpu_ms:.0f} ms on CPU): {callback!r}"[:300]))

        asyncio.events.Handle._run = _run

    def _audit(self, signum, frame) -> None:
        """Unfreeze and collect everything: the garbage found is what freezing kept from the collector."""
        import gc
        import tracemalloc

        frozen = gc.get_freeze_count()
        grown = None
        if self.baseline_snapshot is not None:
            # What is still allocated, over the baseline, by the line that allocated it.
            stats = tracemalloc.take_snapshot().compare_to(self.baseline_snapshot, "lineno")
            grown = [(str(s.traceback), s.size_diff, s.count_diff) for s in stats[:25]]
        arenas = _pymalloc_stats()
        trim = None
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            before = _rss_kb()
            started = time.perf_counter()
            libc.malloc_trim(0)
            trim = {"ms": (time.perf_counter() - started) * 1000, "rss_before_kb": before, "rss_after_kb": _rss_kb()}
        except OSError:
            pass
        gc.unfreeze()
        started = time.perf_counter()
        found = gc.collect()
        ms = (time.perf_counter() - started) * 1000
        audit = {
            "time": time.time(),
            "frozen": frozen,
            "found": found,
            "ms": ms,
            "trim": trim,
            "grown": grown,
            "pymalloc": arenas,
            "pymalloc_baseline": self.baseline_pymalloc,
        }
        Path(self.stats_file + ".audit").write_text(json.dumps(audit))

    def _dump(self, signum, frame) -> None:
        import gc
        import tracemalloc

        from channels.layers import get_channel_layer

        from rooms.realtime import broadcast as realtime
        from rooms.realtime import presence

        blocks = sys.getallocatedblocks()  # first: before this snapshot allocates anything
        tracked = gc.get_objects()
        if self.baseline_pymalloc is None:
            self.baseline_pymalloc = _pymalloc_stats()
        if tracemalloc.is_tracing() and self.baseline_snapshot is None:
            self.baseline_snapshot = tracemalloc.take_snapshot()
        layer = get_channel_layer()
        hubs = sum(len(h) for h in list(realtime._hubs.values()))
        stats = {
            "time": time.time(),
            "rss_kb": _rss_kb(),
            "allocated_blocks": blocks,
            "traced_bytes": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
            "gc_passes": [self.gc_passes[i : i + 4].tolist() for i in range(0, len(self.gc_passes), 4)],
            "gc_count": gc.get_count(),
            "gc_threshold": gc.get_threshold(),
            "gc_frozen": gc.get_freeze_count(),
            "gc_tracked": len(tracked),  # what a full collection scans now
            "gc_tracked_types": collections.Counter(_type_name(o) for o in tracked).most_common(12),
            "stalls": [self.stalls[i : i + 3].tolist() for i in range(0, len(self.stalls), 3)],
            "slow_callbacks": self.slow_callbacks,
            "callback_ms": self.callback_ms,
            "connections": len(self.daphne.connections) if self.daphne is not None else None,
            "layer_channels": len(getattr(layer, "channels", ())),
            "layer_groups": len(getattr(layer, "groups", ())),
            "hubs": hubs,
            "presence_rooms": len(presence._local.rooms),
            "tasks": len(asyncio.all_tasks(self.loop)) if self.loop is not None else None,
            "loop_thread_cpu_s": time.thread_time(),  # the handler runs on the loop's (main) thread
            "process_cpu_s": time.process_time(),
        }
        tmp = self.stats_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh)
        os.replace(tmp, self.stats_file)
        self.last_dump_end = time.perf_counter()


def serve(stats_file: str, host: str, port: str, trace: bool) -> None:
    """``manage.py serve --no-workers`` under the probe."""
    _raise_fd_limit()
    if trace:
        import tracemalloc

        tracemalloc.start(1)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    probe = _ServerProbe(stats_file)
    slow_ms = float(os.environ.get("WS_IDLE_SLOW_CALLBACK_MS") or 0)
    if slow_ms:
        probe.time_callbacks(slow_ms)
    import django

    django.setup()
    import daphne.server  # noqa: F401  (installs Daphne's asyncio reactor)
    from twisted.internet import reactor

    reactor.callWhenRunning(lambda: asyncio.ensure_future(probe.watch_loop()))
    from django.core.management import call_command

    call_command("serve", host=host, port=int(port), no_workers=True)


# --- Idle clients (each client process holds a slice of the idle sockets) -------------------


async def _hold_clients(url: str, tokens: list[str]) -> None:
    """Commands on stdin: ``connect``, ``close``, ``quit``; one JSON status line per command."""
    from websockets.asyncio.client import connect

    sockets: list = []
    readers: list[asyncio.Task] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def drain(ws) -> None:
        try:
            async for _ in ws:
                pass
        except Exception:
            pass

    retries = 0

    async def one(token: str):
        nonlocal retries
        async with gate:
            for attempt in range(20):
                try:
                    return await connect(
                        f"{url}?token={token}",
                        origin=ORIGIN,
                        compression=None,
                        ping_interval=None,  # the server pings; clients answer
                        open_timeout=120,
                        close_timeout=30,
                    )
                except Exception:
                    # A refused or dropped handshake (a server too busy to
                    # answer within its handshake timeout): try again.
                    retries += 1
                    await asyncio.sleep(0.2 * (attempt + 1))
            raise RuntimeError("could not connect")

    async def close(ws) -> None:
        async with gate:
            try:
                await ws.close()
            except Exception:
                pass

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        command = (await reader.readline()).decode().strip()
        started = time.perf_counter()
        if command == "connect":
            sockets = list(await asyncio.gather(*(one(t) for t in tokens)))
            readers = [asyncio.ensure_future(drain(ws)) for ws in sockets]
        elif command == "close":
            await asyncio.gather(*(close(ws) for ws in sockets))
            await asyncio.gather(*readers)
            sockets, readers = [], []
        elif command in ("quit", ""):
            return
        status = {"done": command, "open": len(sockets), "retries": retries, "seconds": time.perf_counter() - started}
        print(json.dumps(status), flush=True)


def clients(url: str, tokens_file: str, first: int, count: int) -> None:
    _raise_fd_limit()
    tokens = json.loads(Path(tokens_file).read_text())[first : first + count]
    asyncio.run(_hold_clients(url, tokens))


# --- The run (this process) ---------------------------------------------------------------


def _prepare(tmp: Path, idle: int) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """A migrated scratch database: (server env, active room's tokens, idle visitors' tokens)."""
    env = scratch_project(tmp)
    from django.conf import settings
    from django.db import transaction

    from channels_app.webchat.sessions import chat_session_join, chat_session_start
    from channels_app.webchat.tokens import chat_token_issue
    from rooms.enums import ChannelType
    from rooms.models import Participant, Room
    from rooms.services import ensure_system_channel

    sender = chat_session_start(display_name="Sender", open_now=True)
    receiver = chat_session_join(sender.room_id, display_name="Receiver")
    channel = ensure_system_channel(settings.ROOMKIT_WEBCHAT_CHANNEL_ID, ChannelType.WEBSOCKET, "Web chat")
    # Idle visitors: a room and a participant each (all a socket needs to open).
    with transaction.atomic():
        rooms = Room.objects.bulk_create([Room() for _ in range(idle)], batch_size=2000)
        people = [Participant(room=r, channel=channel, display_name=f"Idle {i}") for i, r in enumerate(rooms)]
        for p in people:
            p.address = p.id
        Participant.objects.bulk_create(people, batch_size=2000)
    idle_tokens = [chat_token_issue(room_id=p.room_id, participant_id=p.id) for p in people]
    return env, {"sender": sender.token, "receiver": receiver.token}, idle_tokens


class ServerProcess:
    def __init__(self, env: dict[str, str], tmp: Path, trace: bool) -> None:
        self.port = free_port()
        self.stats_file = str(tmp / f"stats-{self.port}.json")
        self.log = open(tmp / f"server-{self.port}.log", "w")
        argv = [PYTHON, str(Path(__file__).resolve()), "--serve", self.stats_file, "127.0.0.1", str(self.port)]
        if trace:
            argv.append("--trace")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{Path(self.log.name).read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    async def stats(self) -> dict:
        """A fresh snapshot from the server (SIGUSR1)."""
        before = os.stat(self.stats_file).st_mtime_ns if os.path.exists(self.stats_file) else 0
        asked = time.time()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.stats_file) and os.stat(self.stats_file).st_mtime_ns != before:
                stats = json.loads(Path(self.stats_file).read_text())
                if stats["time"] >= asked:
                    return stats
            await asyncio.sleep(0.02)
        raise RuntimeError("the server did not answer SIGUSR1")

    async def audit(self) -> dict:
        """Unfreeze and collect in the server (SIGUSR2; it stays unfrozen: do it last)."""
        path = self.stats_file + ".audit"
        asked = time.time()
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(path):
                audit = json.loads(Path(path).read_text())
                if audit["time"] >= asked:
                    return audit
            await asyncio.sleep(0.05)
        raise RuntimeError("the server did not answer SIGUSR2")

    async def wait_for(self, what: str, done, timeout: float = 300) -> dict:
        """Poll snapshots until ``done(stats)``; returns that snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if done(stats):
                return stats
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}: {stats}")
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class ClientProcesses:
    def __init__(self, url: str, tokens_file: str, n: int) -> None:
        self.procs = []
        for first in range(0, n, SOCKETS_PER_CLIENT_PROCESS):
            count = min(SOCKETS_PER_CLIENT_PROCESS, n - first)
            argv = [PYTHON, str(Path(__file__).resolve()), "--clients", url, tokens_file, str(first), str(count)]
            self.procs.append(
                subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            )

    async def command(self, command: str) -> tuple[float, int]:
        """Run ``command`` in every client process: (seconds, handshakes retried so far)."""
        started = time.perf_counter()

        def ask(proc) -> dict:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"client process failed during {command!r}")
            return json.loads(line)

        answers = await asyncio.gather(*(asyncio.to_thread(ask, p) for p in self.procs))
        return time.perf_counter() - started, sum(a["retries"] for a in answers)

    def stop(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class ActiveRoom:
    """The sender and receiver sockets of the one room with traffic."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.closed: list[str] = []  # why the room's sockets stopped reading, if they did
        self.counter = 0
        self.run_id = secrets.token_hex(4)

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        opts = {"origin": ORIGIN, "compression": None, "ping_interval": None, "max_size": None}
        self.sender = await connect(f"{self.url}?token={self.tokens['sender']}", **opts)
        self.receiver = await connect(f"{self.url}?token={self.tokens['receiver']}", **opts)
        self.tasks = [
            asyncio.ensure_future(self._read(self.receiver, True)),
            asyncio.ensure_future(self._read(self.sender, False)),
        ]

    async def _read(self, ws, record: bool) -> None:
        try:
            async for text in ws:
                now = time.perf_counter()
                if record and '"type":"event"' in text:
                    frame = json.loads(text)
                    body = frame["event"]["content"].get("body", "")
                    if body.startswith("b:"):
                        self.arrived[body[2:]] = now
        except Exception as exc:
            self.closed.append(f"{'receiver' if record else 'sender'}: {exc!r}")
        else:
            self.closed.append(f"{'receiver' if record else 'sender'}: closed {ws.close_code} {ws.close_reason!r}")

    async def send(self, count: int, rate: float) -> tuple[list[float], int]:
        """``count`` messages at ``rate`` per second; (latencies in ms, messages lost)."""
        mids = []
        start = time.perf_counter() + 0.05
        for i in range(count):
            self.counter += 1
            mid = f"{self.run_id}-{self.counter}"  # client_msg_id: unique across runs on one database
            mids.append(mid)
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sent[mid] = time.perf_counter()
            await self.sender.send(json.dumps({"type": "message", "text": f"b:{mid}", "client_msg_id": mid}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(m in self.arrived for m in mids):
            await asyncio.sleep(0.01)
        latencies = [(self.arrived[m] - self.sent[m]) * 1000 for m in mids if m in self.arrived]
        return latencies, sum(1 for m in mids if m not in self.arrived)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for ws in (self.sender, self.receiver):
            await ws.close()


def _gc_between(stats_from: dict, stats_to: dict) -> dict:
    t0, t1 = stats_from["time"], stats_to["time"]
    passes = [(int(gen), ms, cpu) for t, gen, ms, cpu in stats_to["gc_passes"] if t0 <= t < t1]
    full = [ms for gen, ms, _ in passes if gen == 2]
    young = [ms for gen, ms, _ in passes if gen < 2]
    stalls = [(ms, cpu) for t, ms, cpu in stats_to["stalls"] if t0 <= t < t1]
    busy = [ms for ms, cpu in stalls if cpu >= ms / 2]
    return {
        "gc_passes": len(passes),
        "gc_full_passes": len(full),
        "gc_full_max_ms": max(full, default=0.0),
        "gc_full_total_ms": sum(full),
        # the CPU the longest full pass used: wall time above it is the machine's other processes
        "gc_full_max_cpu_ms": max(((ms, cpu) for gen, ms, cpu in passes if gen == 2), default=(0.0, 0.0))[1],
        "gc_young_max_ms": max(young, default=0.0),
        "gc_young_total_ms": sum(young),
        "loop_stalls_over_10ms": len(stalls),
        "loop_stall_max_ms": max((ms for ms, _ in stalls), default=0.0),
        # stalls in which the loop's thread was running at least half the time
        "loop_busy_stalls": len(busy),
        "loop_busy_stall_max_ms": max(busy, default=0.0),
        "loop_thread_cpu_ms": (stats_to["loop_thread_cpu_s"] - stats_from["loop_thread_cpu_s"]) * 1000,
        "process_cpu_ms": (stats_to["process_cpu_s"] - stats_from["process_cpu_s"]) * 1000,
        "seconds": t1 - t0,
    }


COUNTS = ("connections", "layer_channels", "layer_groups", "hubs", "presence_rooms", "tasks")


def _baseline_counts(base: dict):
    keys = ("connections", "layer_groups", "hubs", "presence_rooms")
    return lambda s: all(s[k] <= base[k] for k in keys)


async def run_size(n: int, env: dict, tmp: Path, active_tokens: dict, tokens_file: str, args) -> dict:
    server = ServerProcess(env, tmp, args.tracemalloc)
    row: dict = {"n": n}
    client_procs = None
    try:
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/ws/chat/"
        room = ActiveRoom(url, active_tokens)
        await room.open()
        await room.send(args.warmup, args.rate * 4)  # warm: imports, caches, the DB connection
        await asyncio.sleep(1.0)
        base = await server.stats()
        row["baseline"] = {k: base[k] for k in ("rss_kb", "allocated_blocks", "traced_bytes", "layer_channels", "gc_frozen")}
        print(f"N={n}: server up, baseline RSS {base['rss_kb'] / 1024:.1f} MiB", flush=True)

        client_procs = ClientProcesses(url, tokens_file, n)
        cycles = []
        for cycle in range(1, args.cycles + 1):
            connect_s, retried = await client_procs.command("connect")
            opened = await server.wait_for("sockets open", lambda s: s["hubs"] >= n + 1 and s["presence_rooms"] >= n + 1)
            await asyncio.sleep(args.settle)
            opened = await server.stats()
            per_socket_kb = (opened["rss_kb"] - base["rss_kb"]) / n
            print(
                f"  cycle {cycle}: {n} idle sockets open in {connect_s:.1f} s ({retried} handshakes retried); "
                f"RSS {opened['rss_kb'] / 1024:.1f} MiB "
                f"({per_socket_kb:.1f} KB per socket); layer {opened['layer_channels']} channels, "
                f"{opened['layer_groups']} groups; the collector tracks {opened['gc_tracked']:,} objects "
                f"(baseline {base['gc_tracked']:,}), {opened['gc_frozen']:,} frozen",
                flush=True,
            )
            lat_row: dict = {}
            if cycle == 1:
                latencies, lost = await room.send(args.messages, args.rate)
                if not latencies:
                    raise RuntimeError(f"no message reached the room's receiver: {room.closed}")
                after = await server.stats()
                print(f"  the collector tracks {after['gc_tracked']:,} objects: {after['gc_tracked_types']}", flush=True)
                slow = sorted((x for x in after["slow_callbacks"] if opened["time"] <= x[0] < after["time"]), key=lambda x: -x[1])
                for _, ms, what in slow[:20]:
                    print(f"    slow callback {ms:6.1f} ms: {what}", flush=True)
                if after["callback_ms"]:
                    before_cb = opened["callback_ms"]
                    spent = []
                    for name, (calls, total, most) in after["callback_ms"].items():
                        c0, t0, _ = before_cb.get(name, (0, 0.0, 0.0))
                        spent.append((total - t0, calls - c0, most, name))
                    for total, calls, most, name in sorted(spent, reverse=True)[:15]:
                        print(f"    {total:8.0f} ms in {calls:7d} calls (max {most:5.1f} ms): {name}", flush=True)
                lat_row = {
                    "messages": args.messages,
                    "lost": lost,
                    "p50_ms": statistics.median(latencies),
                    "p90_ms": percentile(latencies, 90),
                    "p99_ms": percentile(latencies, 99),
                    "max_ms": max(latencies),
                    "over_100ms": sum(1 for x in latencies if x > 100),
                    **_gc_between(opened, after),
                }
                print(
                    f"  latency over {args.messages} messages at {args.rate:g}/s: p50 {lat_row['p50_ms']:.1f} "
                    f"p90 {lat_row['p90_ms']:.1f} p99 {lat_row['p99_ms']:.1f} max {lat_row['max_ms']:.1f} ms "
                    f"({lat_row['over_100ms']} over 100 ms, {lost} lost); GC: {lat_row['gc_passes']} passes, "
                    f"{lat_row['gc_full_passes']} full (max {lat_row['gc_full_max_ms']:.0f} ms, "
                    f"{lat_row['gc_full_max_cpu_ms']:.0f} ms of it on CPU), young max "
                    f"{lat_row['gc_young_max_ms']:.1f} ms; loop stalls >10 ms: {lat_row['loop_stalls_over_10ms']} "
                    f"(max {lat_row['loop_stall_max_ms']:.0f} ms), of which the loop was busy in "
                    f"{lat_row['loop_busy_stalls']} (max {lat_row['loop_busy_stall_max_ms']:.0f} ms); server CPU "
                    f"{lat_row['process_cpu_ms'] / lat_row['seconds'] / 10:.0f} % of a core, loop thread "
                    f"{lat_row['loop_thread_cpu_ms'] / lat_row['seconds'] / 10:.0f} %",
                    flush=True,
                )
            close_s, _ = await client_procs.command("close")
            closed = await server.wait_for("sockets closed", _baseline_counts(base))
            await asyncio.sleep(args.settle)
            closed = await server.stats()
            traced = None
            if base["traced_bytes"] is not None:
                traced = (closed["traced_bytes"] - base["traced_bytes"]) / 1024
            print(
                f"  closed in {close_s:.1f} s: RSS {closed['rss_kb'] / 1024:.1f} MiB "
                f"({(closed['rss_kb'] - base['rss_kb']) / 1024:+.1f} MiB over baseline), Python blocks "
                f"{closed['allocated_blocks'] - base['allocated_blocks']:+,}"
                + (f", traced {traced:+,.0f} KiB" if traced is not None else "")
                + f"; layer {closed['layer_channels']} channels, {closed['layer_groups']} groups, "
                f"{closed['hubs']} hubs, {closed['presence_rooms']} presence rooms",
                flush=True,
            )
            cycles.append(
                {
                    "cycle": cycle,
                    "connect_s": connect_s,
                    "handshakes_retried": retried,
                    "open_rss_kb": opened["rss_kb"],
                    "per_socket_kb": per_socket_kb,
                    "open_blocks_per_socket": (opened["allocated_blocks"] - base["allocated_blocks"]) / n,
                    "open_traced_kb_per_socket": (
                        (opened["traced_bytes"] - base["traced_bytes"]) / 1024 / n if traced is not None else None
                    ),
                    "open_gc": _gc_between(base, opened),
                    "closed_rss_kb": closed["rss_kb"],
                    "closed_rss_over_baseline_kb": closed["rss_kb"] - base["rss_kb"],
                    "closed_blocks_over_baseline": closed["allocated_blocks"] - base["allocated_blocks"],
                    "closed_traced_over_baseline_kb": traced,
                    "closed_counts": {k: closed[k] for k in COUNTS},
                    **lat_row,
                }
            )
        row["cycles"] = cycles
        await room.close()
        audit = await server.audit()
        row["audit"] = audit
        print(
            f"  audit: unfreezing {audit['frozen']:,} objects and collecting found {audit['found']:,} unreachable "
            f"({audit['found'] / n / args.cycles:.2f} per socket opened) in {audit['ms']:.0f} ms",
            flush=True,
        )
        for where, size, count in audit["grown"] or ():
            print(f"    {size / 1024:+9.1f} KiB {count:+7d} blocks  {where}")
        if audit["pymalloc"]:
            p = audit["pymalloc"]
            b = audit["pymalloc_baseline"] or p
            print(
                f"  pymalloc after the sockets closed: {p['arenas']} arenas of 1 MiB mapped (baseline {b['arenas']}), "
                f"{p['bytes_in_use'] / 2**20:.1f} MiB of blocks in use (baseline {b['bytes_in_use'] / 2**20:.1f}), "
                f"{p['bytes_free_in_pools'] / 2**20:.1f} MiB free in partly used pools",
                flush=True,
            )
        if audit["trim"]:
            t = audit["trim"]
            print(
                f"  malloc_trim(0) after the sockets closed: RSS {t['rss_before_kb'] / 1024:.1f} -> "
                f"{t['rss_after_kb'] / 1024:.1f} MiB in {t['ms']:.0f} ms",
                flush=True,
            )
    finally:
        if client_procs is not None:
            client_procs.stop()
        server.stop()
    return row


def _table(rows: list[dict]) -> str:
    lines = [
        "| N idle | p50 ms | p90 ms | p99 ms | max ms | >100 ms | full GCs (max ms) | loop stalls >10 ms (max ms) "
        "| KB per socket | RSS after close, over baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        c = row["cycles"][0]
        after = " / ".join(f"{x['closed_rss_over_baseline_kb'] / 1024:+.1f} MiB" for x in row["cycles"])
        lines.append(
            f"| {row['n']:,} | {c['p50_ms']:.1f} | {c['p90_ms']:.1f} | {c['p99_ms']:.1f} | {c['max_ms']:.1f} "
            f"| {c['over_100ms']}/{c['messages']} | {c['gc_full_passes']} ({c['gc_full_max_ms']:.0f}) "
            f"| {c['loop_stalls_over_10ms']} ({c['loop_stall_max_ms']:.0f}) | {c['per_socket_kb']:.1f} | {after} |"
        )
    return "\n".join(lines)


async def _run(args, sizes: list[int], env: dict, tmp: Path, active: dict, tokens_file: str) -> list[dict]:
    return [await run_size(n, env, tmp, active, tokens_file, args) for n in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--messages", type=int, default=1500, help="messages timed per size")
    parser.add_argument("--rate", type=float, default=25.0, help="messages per second")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=2, help="connect/close rounds per size")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before a memory snapshot")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations in the server (slower)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (server logs, stats)")
    parser.add_argument("--slow-callbacks", type=float, metavar="MS", help="list the server's loop callbacks longer than MS")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.slow_callbacks:
        os.environ["WS_IDLE_SLOW_CALLBACK_MS"] = str(args.slow_callbacks)
    limit = _raise_fd_limit()
    if limit < max(sizes) + 200:
        sys.exit(f"need {max(sizes) + 200} file descriptors; the hard limit is {limit}")
    started = time.monotonic()
    print(f"idle sockets {sizes}, {args.messages} messages at {args.rate:g}/s into one room; {os.cpu_count()} CPUs", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ws-idle-"))
    try:
        env, active, idle = _prepare(tmp, max(sizes))
        tokens_file = str(tmp / "tokens.json")
        Path(tokens_file).write_text(json.dumps(idle))
        rows = asyncio.run(_run(args, sizes, env, tmp, active, tokens_file))
    finally:
        if args.keep:
            print(f"(scratch directory kept: {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(_table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4], trace="--trace" in sys.argv[5:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--clients":
        clients(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
