#!/usr/bin/env python
"""Delivery throughput: deliveries/s through two Celery workers to a fake Twilio.

The scaled mode end to end, minus the inbound webhook: PostgreSQL (a scratch
database ``roomkit_rel_bench`` on 127.0.0.1:5432), Redis as the broker
(``--redis``, default db 11), two ``celery worker`` processes on the
``deliveries`` and ``default`` queues (settling a delivery fires its status
hooks there), and the fake Twilio API of the tests (a real HTTP server, in a
process of its own, that checks Basic auth and the form and answers 201 with a
Message).

Set-up (not timed): messages through ``process_inbound`` into one room with
ten Twilio recipients, so each message plans ten Delivery rows. Timed: from
the first ``deliver_event_task`` published to the broker until every row is
settled, every send a real ``twilio`` SDK call over HTTP; the vendor must have
one request per delivery, each under its own idempotency key.

Run: ``.venv/bin/python bench/deliveries.py [--deliveries 2000] [--pool threads] [--concurrency 4]``.
It prints one line per run and a JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import prepare_database  # noqa: E402

ACCOUNT = "AC" + "b" * 32
TOKEN = secrets.token_hex(16)
SENDER = "+15558675310"
RECIPIENTS = [f"+1555010{i:04d}" for i in range(10)]
WORKERS = 2


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped and living children (a prefork pool's processes)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total += sum(int(x) for x in stat[11:15]) / ticks  # utime, stime, cutime, cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += _cpu_seconds(int(child))
    return total


def _vendor() -> None:
    """The fake Twilio in its own process: prints its URL, serves until stdin closes, then prints the keys it got."""
    from tests.channels_app.fakes.twilio import FakeTwilio

    with FakeTwilio(ACCOUNT, os.environ["BENCH_TWILIO_TOKEN"]) as vendor:
        print(vendor.url, flush=True)
        sys.stdin.read()
        keys = [r.headers.get("I-Twilio-Idempotency-Token") for r in vendor.message_requests()]
    print(json.dumps({"keys": keys, "created": len(vendor.messages)}), flush=True)


def _start_vendor() -> subprocess.Popen:
    env = {**os.environ, "BENCH_TWILIO_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--vendor"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return proc


def _purge_broker(url: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    # Queued and unacknowledged messages only: the queues' bindings stay (see tests.concurrency.celery_workers).
    keys = [k for name in ("deliveries", "default", "ai", "unacked") for k in r.scan_iter(name + "*")]
    if keys:
        r.delete(*keys)


def _plan(deliveries: int, api_base: str) -> list[int]:
    from django.test import override_settings

    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import Channel, ChannelBinding, Delivery, Room

    source = Channel(id="bench-src", channel_type="sms", provider="http")
    source.set_secrets({"signing_secret": "unused"})
    source.save()
    target = Channel(
        id="bench-twilio",
        channel_type="sms",
        provider="twilio",
        config={"account_sid": ACCOUNT, "from": SENDER, "api_base": api_base},
    )
    target.set_secrets({"auth_token": TOKEN})
    target.save()
    room = Room.objects.create()
    ChannelBinding.objects.create(room=room, channel=source, address="+14017122661")
    for address in RECIPIENTS:
        ChannelBinding.objects.create(room=room, channel=target, address=address)
    with override_settings(ROOMKIT_TASK_MODE="off"):  # rows only: the timed part enqueues them
        for i in range((deliveries + len(RECIPIENTS) - 1) // len(RECIPIENTS)):
            process_inbound(
                InboundMessage(channel_id=source.id, sender="+14017122661", text=f"bench {i}", provider_message_id=f"b{i}")
            )
    return list(Delivery.objects.order_by("pk").values_list("pk", flat=True)[:deliveries])


def _start_workers(pool: str, concurrency: int, prefetch: int | None, log_dir: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "ROOMKIT_TASK_MODE": "celery", "LOG_LEVEL": "WARNING"}
    procs = []
    for i in range(WORKERS):
        argv = [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "roomkit_project",
            "worker",
            "-Q",
            "deliveries,default",
            f"--pool={pool}",
            "-c",
            str(concurrency),
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"bench{i}-{os.getpid()}@%h",
        ]
        if prefetch:
            argv += ["--prefetch-multiplier", str(prefetch)]
        log = open(log_dir / f"worker{i}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    while not all(" ready." in (log_dir / f"worker{i}.log").read_text() for i in range(WORKERS)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("workers did not start:\n" + (log_dir / "worker0.log").read_text()[-3000:])
        time.sleep(0.1)
    return procs


def run(deliveries: int, pool: str, concurrency: int, prefetch: int | None) -> dict:
    """One timed run on a fresh database; returns its measurements."""
    from django.db import connection

    from channels_app.providers import delivery_idempotency_key
    from channels_app.tasks import deliver_event_task
    from rooms.models import Delivery

    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rk-bench-deliveries-{os.getpid()}"
    log_dir.mkdir(exist_ok=True)
    _purge_broker(os.environ["REDIS_URL"])
    vendor = _start_vendor()
    try:
        ids = _plan(deliveries, vendor.stdout.readline().strip())
        procs = _start_workers(pool, concurrency, prefetch, log_dir)
        vendor_cpu_before = _cpu_seconds(vendor.pid)
        try:
            cpu_before = [_cpu_seconds(p.pid) for p in procs]
            here_before = time.process_time()
            started = time.perf_counter()
            for delivery_id in ids:
                deliver_event_task.apply_async(args=[delivery_id])
            published = time.perf_counter() - started
            while Delivery.objects.filter(pk__in=ids, status="queued").count() < len(ids):
                if time.perf_counter() - started > 600:
                    raise RuntimeError("deliveries did not settle within 600 s")
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker exited:\n" + (log_dir / "worker0.log").read_text()[-3000:])
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            worker_cpu = sum(_cpu_seconds(p.pid) - before for p, before in zip(procs, cpu_before, strict=True))
            here_cpu = time.process_time() - here_before
            vendor_cpu = _cpu_seconds(vendor.pid) - vendor_cpu_before
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
        seen = json.loads(vendor.communicate(input="", timeout=60)[0].strip().splitlines()[-1])
    finally:
        if vendor.poll() is None:
            vendor.kill()
    expected = {delivery_idempotency_key(d) for d in Delivery.objects.filter(pk__in=ids)}
    keys = seen["keys"]
    assert len(keys) == len(ids) == seen["created"] and set(keys) == expected, "one vendor request per delivery, each its key"
    connection.close()
    return {
        "deliveries": len(ids),
        "pool": pool,
        "concurrency_per_worker": concurrency,
        "prefetch_multiplier": prefetch or "settings",
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(len(ids) / elapsed, 1),
        "publish_seconds": round(published, 2),
        "worker_cpu_ms_per_delivery": round(worker_cpu / len(ids) * 1000, 2),
        "publisher_cpu_ms_per_delivery": round(here_cpu / len(ids) * 1000, 2),
        "vendor_cpu_ms_per_delivery": round(vendor_cpu / len(ids) * 1000, 2),
        "cpu_cores_busy_workers": round(worker_cpu / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"])
    parser.add_argument("--concurrency", default="4", help="per worker; a comma list runs each")
    parser.add_argument("--prefetch", type=int, default=None, help="worker --prefetch-multiplier (default: settings)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--vendor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vendor:
        _vendor()
        return

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "roomkit_project.settings",
            "REDIS_URL": args.redis,
            "SECRET_KEY": secrets.token_urlsafe(40),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    results = []
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        os.environ["DATABASE_URL"] = prepare_database("postgres", "roomkit_rel_bench")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
        import django

        django.setup()
        result = run(args.deliveries, args.pool, concurrency, args.prefetch)
        print(
            f"{result['deliveries']} deliveries, {WORKERS} workers × {concurrency} ({args.pool}): "
            f"{result['deliveries_per_s']}/s; workers {result['worker_cpu_ms_per_delivery']} ms CPU per delivery"
        )
        results.append(result)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
