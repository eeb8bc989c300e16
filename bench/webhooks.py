#!/usr/bin/env python
"""Signed webhooks over HTTP: Twilio inbound SMS through real server processes.

What a vendor sees of us: a signed ``POST /webhooks/<channel_id>/`` answered
once the message is stored. Each request is a distinct Twilio inbound SMS
(its own ``MessageSid``), signed with the channel's auth token as Twilio signs
it, from one phone number per sender (each sender is a person texting in,
with a room of their own). Senders keep their connection open (as Twilio's
does) and send the next request as soon as the last one is answered; the
latency is the ack: request written → response read.

Two setups:

- ``pg``: PostgreSQL + Redis with two server processes (``manage.py serve
  --no-workers``; senders are spread over both), at 1, 16 and 64 senders.
- ``embedded``: the embedded default (SQLite, no Redis, one process, as ``make
  run``) at 16 senders, beside ``process_inbound`` called from 16 threads
  with the same messages in the same kind of project (the cost of the HTTP
  edge is the gap between the two).

Server CPU per request is read from ``/proc`` (user + system of the server
processes over the timed part). The load generator is plain asyncio sockets
with every request built and signed before the clock starts, so the client
costs as little of the machine's CPU as it can.

Run: ``.venv/bin/python bench/webhooks.py [--setups pg,embedded] [--requests N]
[--server uvicorn|daphne]``. PostgreSQL uses a scratch database
``roomkit_bench_hooks`` on 127.0.0.1:5432 and Redis database 14 on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, percentile, prepare_database, project_env  # noqa: E402

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
OUR_NUMBER = "+15005550006"
REDIS_URL = "redis://127.0.0.1:6379/14"


# --- the project under test -----------------------------------------------------------------


def _setup_project(env: dict[str, str]) -> str:
    """Migrate the project's database and add the Twilio channel (in this process); its id."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    if "REDIS_URL" not in env:
        os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from rooms.models import Channel

    channel = Channel.objects.create(
        id="bench-twilio",
        channel_type="sms",
        provider="twilio",
        config={"account_sid": ACCOUNT_SID, "from": OUR_NUMBER},
    )
    channel.set_secrets({"auth_token": AUTH_TOKEN})
    channel.save()
    return channel.id


def _purge_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _start_servers(env: dict[str, str], ports: list[int], server: str, logs: Path) -> list[subprocess.Popen]:
    procs = []
    for port in ports:
        argv = [sys.executable, "manage.py", "serve", "--no-workers", "--port", str(port)]
        if server:
            argv += ["--server", server]
        log = open(logs / f"server-{port}.log", "wb")  # a file: a pipe nobody reads would stall the server
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    for proc, port in zip(procs, ports, strict=True):
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server on {port} exited: {(logs / f'server-{port}.log').read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over its cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their threads so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


# --- the requests ---------------------------------------------------------------------------


def _form(sender: int, n: int, tag: str) -> dict[str, str]:
    return {
        "ToCountry": "US",
        "SmsMessageSid": f"SM{tag}{sender:04d}{n:08d}".ljust(34, "0"),
        "NumMedia": "0",
        "SmsSid": f"SM{tag}{sender:04d}{n:08d}".ljust(34, "0"),
        "SmsStatus": "received",
        "Body": f"Hello from sender {sender}, message {n}",
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": f"SM{tag}{sender:04d}{n:08d}".ljust(34, "0"),
        "AccountSid": ACCOUNT_SID,
        "From": f"+1415555{sender:04d}",
        "ApiVersion": "2010-04-01",
    }


def _signed_request(base_url: str, path: str, host: str, form: dict[str, str]) -> bytes:
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(AUTH_TOKEN).compute_signature(base_url + path, form)
    body = urlencode(form).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: TwilioProxy/1.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response (Content-Length or chunked); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:] if line)}
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _drive(ports: list[int], requests: list[list[bytes]]) -> tuple[float, list[float], dict[int, int]]:
    """Each sender sends its requests one after another on its own keep-alive connection."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    conns = [await asyncio.open_connection("127.0.0.1", ports[k % len(ports)]) for k in range(len(requests))]
    go = asyncio.Event()

    async def sender(k: int) -> None:
        reader, writer = conns[k]
        await go.wait()
        for request in requests[k]:
            t0 = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    tasks = [asyncio.create_task(sender(k)) for k in range(len(requests))]
    await asyncio.sleep(0)
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started, latencies, statuses


def _start_profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the first server (only the thread holding the GIL: where its CPU goes), raw stacks to ``out``."""
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "-p", str(pid), "--gil", "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _http_round(
    base_url: str,
    channel_id: str,
    ports: list[int],
    pids: list[int],
    senders: int,
    total: int,
    tag: str,
    profile: Path | None = None,
) -> dict:
    path = f"/webhooks/{channel_id}/"
    host = base_url.split("//", 1)[1]
    per = max(1, total // senders)
    warm = [[_signed_request(base_url, path, host, _form(k, -1 - i, tag + "w")) for i in range(5)] for k in range(senders)]
    asyncio.run(_drive(ports, warm))
    plan = [[_signed_request(base_url, path, host, _form(k, i, tag)) for i in range(per)] for k in range(senders)]
    profiler = _start_profiler(pids[0], profile / f"{tag}.txt") if profile else None
    cpu0, (busy0, all0) = _cpu_seconds(pids), _machine_busy_seconds()
    elapsed, latencies, statuses = asyncio.run(_drive(ports, plan))
    cpu = _cpu_seconds(pids) - cpu0
    busy1, all1 = _machine_busy_seconds()
    if profiler:
        profiler.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        profiler.wait(30)
    n = len(latencies)
    return {
        "senders": senders,
        "requests": n,
        "requests_per_s": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "server_cpu_ms_per_request": cpu / n * 1000,
        # Everything on the machine: servers, database, Redis and this load generator.
        "machine_cpu_ms_per_request": (busy1 - busy0) / n * 1000,
        "machine_busy": (busy1 - busy0) / max(all1 - all0, 1e-9),
        "errors": sum(c for s, c in statuses.items() if s != 200),
    }


def _count_events(channel_id: str) -> int:
    from rooms.models import RoomEvent

    return RoomEvent.objects.filter(source_channel_id=channel_id).count()


# --- process_inbound alone, for comparison --------------------------------------------------


def _direct_round(channel_id: str, senders: int, total: int) -> dict:
    """The same messages through ``process_inbound`` from ``senders`` threads of this process."""
    from django.db import connection

    from rooms.inbound import InboundMessage, process_inbound

    per = max(1, total // senders)

    def message(k: int, i: int) -> InboundMessage:
        form = _form(k, i, "direct")
        return InboundMessage(
            channel_id=channel_id, sender=form["From"], text=form["Body"], provider_message_id=form["MessageSid"]
        )

    for k in range(senders):
        process_inbound(message(k, -1))
    go = threading.Barrier(senders + 1)

    def run(k: int) -> None:
        batch = [message(k, i) for i in range(per)]
        go.wait()
        for m in batch:
            process_inbound(m)
        connection.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    go.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return {"senders": senders, "events": per * senders, "events_per_s": per * senders / (time.perf_counter() - started)}


# --- setups ---------------------------------------------------------------------------------


def child(setup: str, requests: int, server: str, senders_list: list[int], profile: Path | None) -> None:
    tmp = Path(tempfile.mkdtemp())
    ports = [free_port()] if setup == "embedded" else [free_port(), free_port()]
    base_url = f"http://127.0.0.1:{ports[0]}"
    if setup == "pg":
        database_url = prepare_database("postgres", "roomkit_bench_hooks")
        _purge_redis(REDIS_URL)
        env = project_env(database_url, REDIS_URL, base_url, tmp / "media")
    else:
        env = project_env(f"sqlite:///{tmp / 'bench.sqlite3'}", "", base_url, tmp / "media")
        env["ROOMKIT_TASK_MODE"] = "thread"
    channel_id = _setup_project(env)
    rounds = []
    procs = _start_servers(env, ports, server, tmp)
    try:
        pids = [p.pid for p in procs]
        for senders in senders_list:
            tag = f"{setup}-s{senders}"
            rounds.append(_http_round(base_url, channel_id, ports, pids, senders, requests, tag, profile))
    finally:
        _stop(procs)
    report: dict = {"setup": setup, "server": server or "default", "servers": len(ports), "rounds": rounds}
    report["events_stored"] = _count_events(channel_id)
    report["requests_sent"] = sum(r["requests"] + 5 * r["senders"] for r in rounds)
    if setup == "embedded":
        report["process_inbound"] = _direct_round(channel_id, senders_list[-1], requests)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setups", default="pg,embedded")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per round")
    parser.add_argument("--server", default="", help="the ASGI server `serve` runs (default: its own default)")
    parser.add_argument("--senders", default="", help="concurrent senders per round (default: pg 1,16,64; embedded 16)")
    parser.add_argument("--profile", default="", help="a directory: py-spy profiles of the first server, per round")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        default = "1,16,64" if args.child == "pg" else "16"
        senders = [int(s) for s in (args.senders or default).split(",")]
        child(args.child, args.requests, args.server, senders, Path(args.profile) if args.profile else None)
        return
    for setup in args.setups.split(","):
        argv = [sys.executable, __file__, "--child", setup, "--requests", str(args.requests)]
        if args.server:
            argv += ["--server", args.server]
        if args.senders:
            argv += ["--senders", args.senders]
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            argv += ["--profile", str(Path(args.profile).resolve())]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(f"{setup}: failed\n{out.stderr[-3000:]}")
            continue
        report = json.loads(out.stdout.strip().splitlines()[-1])
        _print(report)


def _print(report: dict) -> None:
    where = "PostgreSQL + Redis" if report["setup"] == "pg" else "embedded default (SQLite, no Redis)"
    print(f"\n{where}, {report['servers']} server process(es), server: {report['server']}")
    print(
        f"{'senders':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/req':>18}"
        f" {'machine CPU ms/req':>19} {'machine busy':>13} {'errors':>7}"
    )
    for r in report["rounds"]:
        print(
            f"{r['senders']:>8} {r['requests_per_s']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
            f" {r['server_cpu_ms_per_request']:>18.2f} {r['machine_cpu_ms_per_request']:>19.2f}"
            f" {r['machine_busy']:>13.0%} {r['errors']:>7}"
        )
    print(f"events stored {report['events_stored']} of {report['requests_sent']} requests")
    direct = report.get("process_inbound")
    if direct:
        http = next(r for r in report["rounds"] if r["senders"] == direct["senders"])
        print(
            f"process_inbound from {direct['senders']} threads: {direct['events_per_s']:.0f} events/s;"
            f" signed webhooks at {http['senders']} senders reach {http['requests_per_s'] / direct['events_per_s']:.0%} of it"
        )


if __name__ == "__main__":
    main()
