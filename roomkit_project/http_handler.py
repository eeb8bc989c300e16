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

Requests under ``ROOMKIT_LEAN_PATH_PREFIXES`` (the vendors' webhooks: machines,
not browsers) go through ``ROOMKIT_LEAN_MIDDLEWARE`` instead of the whole
``MIDDLEWARE``: no sessions, CSRF, authentication, messages, static files or
Content-Security-Policy, which cost a fifth of a webhook's server time and
mean nothing to a vendor's HTTP client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core import signals
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import connections
from django.http.response import FileResponse, HttpResponseBase
from django.urls import set_script_prefix
from django.utils.module_loading import import_string

# Marks the end of a streaming response's iterator without raising StopIteration across threads.
_DONE = object()


class PooledSyncASGIHandler(ASGIHandler):
    """An ASGI app for Django's HTTP requests that runs each on a fixed pool of ``threads`` threads."""

    def __init__(self, threads: int, lean_prefixes: tuple[str, ...] = (), lean_middleware: tuple[str, ...] = ()) -> None:
        base.BaseHandler.__init__(self)
        # The sync chain: every middleware we use is sync-capable, so no hops inside a request.
        self.load_middleware(is_async=False)
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        self._lean_prefixes = lean_prefixes
        self._lean = LeanHandler(lean_middleware) if lean_prefixes else None

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
            lean = self._lean is not None and request.path.startswith(self._lean_prefixes)
            response = (self._lean if lean else self).get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # 64 KB per trip to the pool, as Django's ASGI handler reads
        if not response.streaming:
            if not response.has_header("Content-Length"):
                response.headers["Content-Length"] = str(len(response.content))
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

    def close_connections(self) -> None:
        """Close the database connections every pool thread keeps (before a test database is dropped, say)."""
        barrier = threading.Barrier(self.threads)

        def close_mine() -> None:
            barrier.wait(timeout=30)  # one task per thread: none can take a second while the others wait
            connections.close_all()

        for future in [self._pool.submit(close_mine) for _ in range(self.threads)]:
            future.result()

    def shutdown(self) -> None:
        """Let running requests finish and stop the pool's threads."""
        self._pool.shutdown(wait=True)


class LeanHandler(base.BaseHandler):
    """Django's request handling with ``middleware`` (dotted paths) as its chain instead of ``settings.MIDDLEWARE``.

    Only plain middleware (a callable around ``get_response``): one with view,
    exception or template-response hooks needs the full chain.
    """

    def __init__(self, middleware: tuple[str, ...]) -> None:
        super().__init__()
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(middleware):
            layer = import_string(path)(handler)
            hooks = [h for h in ("process_view", "process_exception", "process_template_response") if hasattr(layer, h)]
            if hooks:
                raise ImproperlyConfigured(f"{path} has {', '.join(hooks)}: it cannot be in the lean middleware chain")
            handler = convert_exception_to_response(layer)
        self._middleware_chain = handler


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
