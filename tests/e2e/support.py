"""Browser tests' plumbing: Debian's Chromium through Playwright, a real Daphne, the chat page.

``ROOMKIT_E2E=1`` turns the browser tests on. Then a missing Chromium or
Playwright is a failure with the install command, never a skip: CI must not
pass by running nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from django.db import connections
from django.test import TransactionTestCase

from channels_app.signing import SIGNATURE_HEADER, sign
from channels_app.webchat.sessions import chat_session_open
from channels_app.webchat.tokens import chat_token_verify
from tests.concurrency.processes import VENV_BIN, Child, child_env, free_port, wait_for_port

E2E_ENABLED = os.environ.get("ROOMKIT_E2E") == "1"
SKIP_REASON = "browser tests are off: set ROOMKIT_E2E=1 (needs Debian's chromium and the playwright package)"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
E2E_REDIS_URL = "redis://127.0.0.1:6379/7"
SESSION_KEY = "roomkit.chat.session"
# Records every message element the page ever adds, to catch a bubble shown
# twice even for a moment. Injected by the browser before the page's own script.
RECORD_ADDED = """
(() => {
  window.__rkAdded = [];
  const start = () => {
    const list = document.getElementById("messages");
    if (!list) return;
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) {
        if (n.nodeType === 1 && n.dataset && n.dataset.seq) window.__rkAdded.push(Number(n.dataset.seq));
      }
    }).observe(list, { childList: true });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"""


def require_browser() -> Any:
    """Playwright's sync API, after checking that Chromium is there; raise with the fix if not."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise AssertionError(
            "ROOMKIT_E2E=1 but the 'playwright' package is missing: .venv/bin/pip install -r requirements-dev.txt"
        ) from exc
    if not os.access(CHROMIUM, os.X_OK):
        raise AssertionError(f"ROOMKIT_E2E=1 but {CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    return sync_playwright


def redis_up(url: str = E2E_REDIS_URL) -> bool:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ChatServer:
    """One Daphne serving the project on a fixed port, restartable on that port.

    It runs on the test database (``child_env``), keeps uploads in its own
    temporary MEDIA_ROOT, and believes it is reached at its own address
    (``PUBLIC_BASE_URL``), so the page's origin and the media URLs match.
    """

    def __init__(self, **env_overrides: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.media_root = Path(tempfile.mkdtemp(prefix="rk-e2e-media-"))
        self.env_overrides = {"MEDIA_ROOT": str(self.media_root), "PUBLIC_BASE_URL": self.base_url, **env_overrides}
        self.child: Child | None = None
        self.logs: list[str] = []

    def start(self) -> None:
        self.child = Child(
            [
                str(VENV_BIN / "python"),
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "roomkit_project.asgi:application",
            ],
            child_env(**self.env_overrides),
            name=f"e2e-daphne-{self.port}",
        )
        wait_for_port(self.child, self.port)

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL): sockets drop without a close frame."""
        if self.child is None:
            return
        self.logs.append(self.child.output())
        if self.child.proc.poll() is None:
            self.child.proc.send_signal(signal.SIGKILL)
            self.child.proc.wait(10)
        self.child.stop()
        self.child = None

    def output(self) -> str:
        return "\n".join([*self.logs, self.child.output() if self.child else ""])

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None
        shutil.rmtree(self.media_root, ignore_errors=True)


def post_webhook(server: ChatServer, channel_id: str, secret: str, payload: dict[str, Any]) -> httpx.Response:
    """A provider's signed inbound webhook, sent to the running server."""
    body = json.dumps(payload).encode()
    return httpx.post(
        f"{server.base_url}/webhooks/{channel_id}/",
        content=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
        timeout=15,
    )


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour, made here (no image library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message or check}; last value: {last!r}")


def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a fresh thread; its result, or its exception re-raised.

    Playwright's sync API keeps an event loop running in the test's thread, and
    the publisher in ``rooms.realtime.broadcast`` sends through a running loop when it
    finds one; code that publishes (the inbound path, stream frames) runs here
    instead, as a worker would: no loop, its own database connection.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="e2e-off-loop")
    thread.start()
    thread.join(60)
    if thread.is_alive():
        raise AssertionError(f"{fn} did not finish within 60s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- the page -----------------------------------------------------------------


def bubbles(page: Any) -> list[dict[str, Any]]:
    """The sequenced message bubbles on the page, in DOM order."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#messages .msg[data-seq]')].map((m) => ({
            seq: Number(m.dataset.seq),
            eventId: m.dataset.eventId,
            mine: m.classList.contains('mine'),
            name: m.querySelector('.meta .name')?.textContent ?? null,
            text: [...m.querySelectorAll('.bubble .text')].map((t) => t.textContent).join('\\n'),
            foot: m.querySelector('.foot')?.textContent ?? '',
            images: [...m.querySelectorAll('.bubble img')].map((i) => ({src: i.src, w: i.naturalWidth, alt: i.alt})),
            deleted: m.classList.contains('deleted'),
        }))"""
    )


def texts(page: Any) -> list[str]:
    return [b["text"] for b in bubbles(page)]


def session_of(page: Any) -> dict[str, Any] | None:
    return page.evaluate(f"() => JSON.parse(localStorage.getItem('{SESSION_KEY}') || 'null')")


def start_chat(page: Any, base_url: str, name: str, *, open_room: bool = True) -> dict[str, Any]:
    """Open the page as a new visitor, give a name, start; the stored session.

    ``open_room``: create the room the session reserved now, as the visitor's
    first message would, for tests that bind others to it before anyone writes.
    """
    page.goto(base_url + "/")
    page.fill("#display-name", name)
    page.click("#start")
    session = wait_until(lambda: session_of(page), message="the page stored a session")
    wait_connected(page)
    if open_room:
        chat_session_open(chat_token_verify(session["token"]))
    return session


def open_with_session(page: Any, base_url: str, session: Any, display_name: str) -> None:
    """Open the page as a visitor whose session was made elsewhere (a joined participant)."""
    page.goto(base_url + "/")
    data = {
        "room_id": session.room_id,
        "participant_id": session.participant_id,
        "token": session.token,
        "display_name": display_name,
    }
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [SESSION_KEY, json.dumps(data)])
    page.reload()
    wait_connected(page)


def wait_connected(page: Any, timeout: float = 15.0) -> None:
    wait_until(
        lambda: page.evaluate("() => document.getElementById('status').classList.contains('online')"),
        timeout=timeout,
        message="the page's socket is connected",
    )


def send_text(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


class BrowserTestCase(TransactionTestCase):
    """One Daphne (``ChatServer``) and one Chromium for the test class.

    ``server_env``: environment overrides for the server (e.g. in-process
    workers so agents answer); ``browser_args``: extra Chromium flags. Playwright's sync API keeps an event loop in
    this thread; the test's own ORM calls between browser steps are plain
    synchronous calls, so Django's async-safety check is turned off for the class.
    """

    server_env: dict[str, str] = {}
    # Chromium flags beyond CHROMIUM_ARGS (e.g. a fake microphone), for the class's browser.
    browser_args: tuple[str, ...] = ()
    server: ChatServer
    browser: Any

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        sync_playwright = require_browser()
        previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        cls.addClassCleanup(
            lambda: (
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
                if previous is None
                else os.environ.__setitem__("DJANGO_ALLOW_ASYNC_UNSAFE", previous)
            )
        )
        cls.server = ChatServer(**cls.server_env)
        cls.addClassCleanup(cls.server.stop)
        cls.server.start()
        cls.playwright = sync_playwright().start()
        cls.addClassCleanup(cls.playwright.stop)
        cls.browser = cls.playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *cls.browser_args])
        cls.addClassCleanup(cls.browser.close)
