"""Real Celery workers and beat for the tests, on the test database and the test Redis.

Each is a ``celery -A roomkit_project …`` subprocess (``tests.concurrency.processes``
starts it with ``DATABASE_URL`` pointing at the database the test runner made and
stops it at clean-up, failed test or not). Waits poll a condition against a
deadline and show the processes' output when it passes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from tests.concurrency.processes import VENV_BIN, Child, child_env, start_child

# The queues every worker serves here: deliveries, and the hooks their settling fires.
QUEUES = "deliveries,default"
# The broker's own keys in Redis (kombu): the queues, the unacknowledged messages and their index.
BROKER_KEYS = ("deliveries", "default", "ai", "unacked", "unacked_index", "unacked_mutex")


def scaled_mode_available() -> bool:
    """PostgreSQL and Redis: what real workers on other processes need (a shared database and a broker)."""
    return bool(settings.REDIS_URL) and "postgresql" in settings.DATABASES["default"]["ENGINE"]


SKIP_REASON = (
    "needs the scaled mode: DATABASE_URL=postgres://… and REDIS_URL=redis://… (real Celery workers share the "
    "test database and use Redis as their broker; .ci/run's second pass)"
)


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def purge_broker() -> None:
    """Forget every queued and unacknowledged task message (another test's, or a killed worker's).

    The queues' bindings (``_kombu.binding.*``) stay: a process that declared a
    queue once does not declare it again, and without its binding Redis drops
    what that process publishes.
    """
    r = redis_client()
    keys = [k for name in BROKER_KEYS for k in r.scan_iter(name + "*")]
    if keys:
        r.delete(*keys)


def unacked_tasks(task_name: str) -> list[tuple[str, list[Any]]]:
    """``(task id, args)`` of the ``task_name`` messages a worker took and has not acknowledged."""
    found = []
    for raw in redis_client().hvals("unacked"):
        message = json.loads(raw)[0]  # kombu stores [message, exchange, routing key]
        headers = message.get("headers", {})
        if headers.get("task") == task_name:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append((headers["id"], args))
    return found


def worker_env(**overrides: str) -> dict[str, str]:
    """A child's environment in the scaled mode: tasks go through the broker."""
    return child_env(ROOMKIT_TASK_MODE="celery", **overrides)


def start_worker(
    testcase: Any, name: str, *, pool: str = "threads", concurrency: int = 2, env: dict[str, str] | None = None
) -> Child:
    """``celery worker`` on the deliveries and default queues; ``wait_ready`` before relying on it."""
    return start_child(
        testcase,
        [
            str(VENV_BIN / "celery"),
            "-A",
            "roomkit_project",
            "worker",
            "-Q",
            QUEUES,
            f"--pool={pool}",
            "-c",
            str(concurrency),
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}-{os.getpid()}@%h",
        ],
        env or worker_env(),
        name=name,
    )


def start_beat(testcase: Any, tmp: Path, env: dict[str, str] | None = None) -> Child:
    """``celery beat`` with the project's schedule (``CELERY_BEAT_SCHEDULE``) kept in a scratch file."""
    return start_child(
        testcase,
        [
            str(VENV_BIN / "celery"),
            "-A",
            "roomkit_project",
            "beat",
            "--loglevel=INFO",
            "--scheduler",
            "celery.beat:PersistentScheduler",
            "--schedule",
            str(tmp / "beat-schedule"),
        ],
        env or worker_env(),
        name="beat",
    )


def wait_ready(*workers: Child, deadline_s: float = 30.0) -> None:
    """Until each worker has said it consumes (``… ready.``)."""
    wait_until(lambda: all(" ready." in w.output(200_000) for w in workers), "workers ready", workers, deadline_s)


def broker_state() -> str:
    """What the broker holds now: queue lengths and unacknowledged messages (for a failure's message)."""
    r = redis_client()
    queued = {name: r.llen(name) for name in ("deliveries", "default")}
    return f"queued {queued}, unacknowledged {r.hlen('unacked')}"


def wait_until(
    done: Callable[[], bool],
    what: str,
    children: tuple[Child, ...] | list[Child],
    deadline_s: float,
    state: Callable[[], str] | None = None,
) -> None:
    """Poll ``done`` until it holds; fail with ``state()``, the broker's state and the children's output
    when ``deadline_s`` passes or one of them exits."""
    deadline = time.monotonic() + deadline_s
    while True:
        # Autocommit, no transaction open: each query sees the workers' latest commits.
        if done():
            return
        exited = [c for c in children if c.proc.poll() is not None and c.proc.returncode != -signal.SIGKILL]
        if exited or time.monotonic() > deadline:
            why = f"{exited[0].name} exited with {exited[0].proc.returncode}" if exited else f"not within {deadline_s:g} s"
            logs = "\n".join(f"--- {c.name}\n{c.output(20_000)}" for c in children)
            detail = state() if state else ""
            raise AssertionError(f"{why}: {what}\n{detail}\n{broker_state()}\n{logs}")
        time.sleep(0.05)


def pool_processes(worker: Child) -> list[int]:
    """The pids of a prefork worker's pool processes (its children)."""
    pids: list[int] = []
    for task in Path(f"/proc/{worker.proc.pid}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(pid) for pid in children)
    return pids
