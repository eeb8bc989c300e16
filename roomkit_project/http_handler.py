"""Django's HTTP requests under ASGI, each served whole on one thread of a fixed pool, as a WSGI server serves them.

Django's own ``ASGIHandler`` runs every request inside a fresh
``ThreadSensitiveContext``: the request's sync code (middleware, view, ORM)
runs on a thread created for that request and thrown away after it. All our
views are sync, so each request paid for a new thread, a hop to it and back
for each sync middleware, and — because Django keeps database connections per
thread — a new database connection: ``CONN_MAX_AGE`` never applied, and under
load PostgreSQL ran out of connections ("too many clients" → 500s). Measured
before this handler, on this 2-core machine: 131 signed webhooks/s at 16
senders on the embedded default, 8.3 ms of server CPU each.

Here the event loop only reads the body and writes the response; the request
itself (request_started, the sync middleware chain, the view,
request_finished) runs start to finish on one of ``threads`` long-lived
threads. A thread keeps its database connection between requests, so
``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` work as documented, a process
never holds more connections than it has threads, and concurrent requests
reach the inbound path's group commit together. WebSockets are untouched:
they stay on the event loop through Channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

# Marks the end of a streaming response's iterator without raising StopIteration across threads.
_DONE = object()


class PooledSyncASGIHandler(ASGIHandler):
    """An ASGI app for Django's HTTP requests that runs each on a fixed pool of ``threads`` threads."""

    def __init__(self, threads: int) -> None:
        base.BaseHandler.__init__(self)
        # The sync chain: every middleware we use is sync-capable, so no hops inside a request.
        self.load_middleware(is_async=False)
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self._pool, self._respond, scope, body_file)
        try:
            if response.streaming:
                await self._send_streaming(loop, response, send)
            else:
                await self.send_response(response, send)
        finally:
            if response.streaming:
                await loop.run_in_executor(self._pool, _close, response, body_file)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The whole request, on a pool thread: request_started, the request, the middleware chain and view.

        A response with its body in memory is closed here too (request_finished:
        Django returns this thread's database connection to its keep-or-close
        rules), before the loop sends it.
        """
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
        if not response.streaming:
            _close(response, body_file)
        return response

    async def _send_streaming(self, loop: asyncio.AbstractEventLoop, response: HttpResponseBase, send: Any) -> None:
        """A sync streaming body (a file, say) read chunk by chunk on the pool, never whole into memory."""
        if response.is_async:
            await self.send_response(response, send)
            return
        await send({"type": "http.response.start", "status": response.status_code, "headers": _headers(response)})
        parts: Iterator[bytes] = iter(response.streaming_content)
        while (part := await loop.run_in_executor(self._pool, next, parts, _DONE)) is not _DONE:
            for chunk, _ in self.chunk_bytes(part):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body"})

    def shutdown(self) -> None:
        """Let running requests finish and stop the pool's threads."""
        self._pool.shutdown(wait=True)


def _close(response: HttpResponseBase, body_file: Any) -> None:
    try:
        response.close()  # fires request_finished on this thread
    finally:
        body_file.close()


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    """The response's headers and cookies as ASGI wants them (as ``ASGIHandler.send_response`` builds them)."""
    headers = [
        (name.encode("ascii") if isinstance(name, str) else name, value.encode("latin1") if isinstance(value, str) else value)
        for name, value in response.items()
    ]
    headers += [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()]
    return headers
