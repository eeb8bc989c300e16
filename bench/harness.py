"""What the benchmarks share: a scratch database or project, percentiles, free ports, and a real chat socket.

The socket is a real ChatConsumer on an event loop in its own thread, as Daphne
serves sockets while sync views run on worker threads. It is driven the way a
server drives an ASGI app (plain receive/send callables; Channels' test
communicator patches on every receive and would cost more than the consumer),
and every frame it sends is handed, decoded, to ``on_frame`` with its arrival time.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_project(tmp: Path, **extra_env: str) -> dict[str, str]:
    """A migrated SQLite project in ``tmp``, set up in this process too; the environment for its servers.

    No Redis (the embedded default), no background work, a throwaway secret,
    and no limits on the chat socket: a bench's sender writes faster than a
    visitor may, and what is measured is delivery, not the abuse controls.
    """
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "roomkit_project.settings",
            "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ROOMKIT_TASK_MODE": "off",
            "LOG_LEVEL": "WARNING",
            "MEDIA_ROOT": str(tmp / "media"),
            "PYTHONUNBUFFERED": "1",
            "ROOMKIT_CHAT_MESSAGE_RATE": "",
            "ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE": "",
            "ROOMKIT_CHAT_FRAME_RATE": "",
            "ROOMKIT_CHAT_SESSION_RATE": "",
            **extra_env,
        }
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=root, env=env, check=True)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(root))
    import django

    django.setup()
    return env


def project_env(database_url: str, redis_url: str, base_url: str, media: Path) -> dict[str, str]:
    """The environment of a project under a benchmark: its database, Redis or none, public URL and media folder."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "roomkit_project.settings",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(40),
            "PUBLIC_BASE_URL": base_url,
            "LOG_LEVEL": "WARNING",
            "MEDIA_ROOT": str(media),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def prepare_database(db: str, name: str) -> str:
    """A fresh, empty database URL: a temporary SQLite file or PostgreSQL database ``name``."""
    if db == "sqlite":
        return f"sqlite:///{Path(tempfile.mkdtemp()) / f'{name}.sqlite3'}"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


class ChatSocket:
    def __init__(self, token: str, on_frame: Callable[[dict, float], None]) -> None:
        self.on_frame = on_frame
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._open(token), self.loop).result(10)

    async def _open(self, token: str) -> None:
        from roomkit_project.asgi import application

        self.inbox: asyncio.Queue = asyncio.Queue()
        accepted = asyncio.get_running_loop().create_future()

        async def send(message: dict) -> None:
            now = time.perf_counter()
            if message["type"] == "websocket.accept":
                accepted.set_result(True)
            elif message["type"] == "websocket.close" and not accepted.done():
                accepted.set_exception(RuntimeError(f"socket refused: {message}"))
            elif message["type"] == "websocket.send":
                self.on_frame(json.loads(message["text"]), now)

        scope = {
            "type": "websocket",
            "path": "/ws/chat/",
            "raw_path": b"/ws/chat/",
            "query_string": f"token={token}".encode(),
            "headers": [(b"origin", b"http://127.0.0.1:8000")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }
        self.app = asyncio.ensure_future(application(scope, self.inbox.get, send))
        await self.inbox.put({"type": "websocket.connect"})
        await asyncio.wait_for(accepted, 10)

    def close(self) -> None:
        async def _close() -> None:
            await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(self.app, 10)

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_child(script: str, db: str, options: dict[str, object]) -> dict | None:
    """Run ``script --child db --option value …`` (one database per process, its own settings)
    and return the JSON report it prints last; print its error output and return None if it failed."""
    argv = [sys.executable, script, "--child", db]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=Path(script).resolve().parent.parent)
    if out.returncode != 0:
        print(f"{db}: failed\n{out.stderr[-3000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_until(done: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError(what)
        time.sleep(0.0005)
