"""Other OS processes on the test database: Daphne servers, Celery workers, scripts.

Children get ``DATABASE_URL`` pointing at the database the test runner created
(a file for SQLite, ``test_<name>`` on PostgreSQL), so they read and write the
same rows as the test. Every process started here is registered for cleanup
on the test case, so it is stopped even when the test fails.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
VENV_BIN = Path(sys.executable).parent
ORIGIN = "http://127.0.0.1:8000"


def database_url_for_children() -> str:
    """A URL for the database this test run uses, for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("other processes need a file-backed SQLite test database")
        return f"sqlite:///{name}"
    if connection.vendor == "postgresql":
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"
    raise RuntimeError(f"no child-process URL for database vendor {connection.vendor!r}")


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "roomkit_project.settings",
            "DATABASE_URL": database_url_for_children(),
            "ROOMKIT_TASK_MODE": "off",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            # Children serve a whole suite's sessions from one address, as the
            # test process does (tests.runner); throttle tests set their own.
            "ROOMKIT_CHAT_SESSION_RATE": settings.ROOMKIT_CHAT_SESSION_RATE,
            # The scripted agent's reading pace, as in the test process (tests.runner).
            "ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS": str(settings.ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS),
            "ROOMKIT_SCRIPTED_WORD_DELAY_MS": str(settings.ROOMKIT_SCRIPTED_WORD_DELAY_MS),
        }
    )
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    env.update(overrides)
    return env


def quiet_logger(testcase: Any, name: str, level: int = logging.WARNING) -> None:
    """Raise ``name``'s log level for one test (httpx logs every request at INFO)."""
    logger = logging.getLogger(name)
    testcase.addCleanup(logger.setLevel, logger.level)
    logger.setLevel(level)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A subprocess whose combined output goes to a temp file (shown on failure)."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"rk-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            args, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def output(self, limit: int = 6000) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return text[-limit:]

    def stop(self, timeout: float = 8.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def start_child(testcase: Any, args: list[str], env: dict[str, str], name: str) -> Child:
    child = Child(args, env, name)
    testcase.addCleanup(child.stop)
    return child


def wait_for_port(child: Child, port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise AssertionError(f"{child.name} exited with {child.proc.returncode}:\n{child.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{child.name} did not accept on 127.0.0.1:{port} within {deadline_s}s:\n{child.output()}")


def start_daphne(testcase: Any, **env_overrides: str) -> tuple[Child, int]:
    """A real Daphne serving the project's ASGI app on 127.0.0.1, ready to accept."""
    port = free_port()
    child = start_child(
        testcase,
        [
            str(VENV_BIN / "python"),
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "roomkit_project.asgi:application",
        ],
        child_env(**env_overrides),
        name=f"daphne-{port}",
    )
    return child, port


def start_daphnes(testcase: Any, n: int, **env_overrides: str) -> list[tuple[Child, int]]:
    """``n`` Daphne processes started together (they boot in parallel), each ready."""
    servers = [start_daphne(testcase, **env_overrides) for _ in range(n)]
    for child, port in servers:
        wait_for_port(child, port)
    return servers
