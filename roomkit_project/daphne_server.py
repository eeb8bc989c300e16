"""Daphne's server, with its passes over every connection cut into slices and closed sockets freed at once.

Imported only by ``manage.py serve`` (importing ``daphne.server`` installs
Twisted's asyncio reactor).

Daphne walks all its connections once a second (``application_checker``:
reap finished applications, kill those that outlive a closed socket) and
every two seconds (``timeout_checker``: timeouts and keep-alive pings), each
in one go: with 10,000 sockets open, each walk holds the event loop for tens
of milliseconds, and every message that arrives meanwhile waits. Here one
timer every ``TICK_SECONDS`` does a slice of each walk
(``roomkit_project.daphne_tuning.SlicedRound``): every connection is still
visited once per second and once per two seconds, with the same checks, no
turn of the loop does more than a slice, and a slice sends at most a few
dozen keep-alive pings (sockets that opened together fall due together).

A connection Daphne forgets still leaves two reference cycles behind: the
HTTP request that was upgraded stays in its ``HTTPChannel``'s list of
requests (request → channel → list → request), and autobahn resolves the
protocol's ``is_closed`` Deferred with the protocol itself (protocol →
Deferred → protocol). Only a full garbage collection would free them, with
everything they hold: the socket's buffers and autobahn state. Once Daphne
has forgotten the connection nothing uses either link, so they are cut there
and the whole connection is freed by reference counting as it closes (see
``roomkit_project.gc_tuning`` for why that matters).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import CancelledError
from typing import Any

import daphne.server  # noqa: F401  (installs the asyncio reactor before anything else imports one)
from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor

from roomkit_project.daphne_tuning import TICK_SECONDS, SlicedRound, check_websocket_timeouts, pings_per_tick

logger = logging.getLogger("daphne.server")

APPLICATION_CHECK_PERIOD = 1.0  # as Daphne's application_checker
TIMEOUT_CHECK_PERIOD = 2.0  # as Daphne's timeout_checker


def _cut_cycles(protocol: Any) -> None:
    """Cut the reference cycles a forgotten connection keeps (see the module docstring)."""
    if isinstance(protocol, WebRequest):
        channel = getattr(protocol, "channel", None)
        # Only an upgraded request (its transport handed to the WebSocket) or a
        # request whose connection was lost is left in its channel's list.
        if channel is not None and protocol in getattr(channel, "requests", ()):
            channel.requests.remove(protocol)
    else:
        closed = protocol.__dict__.get("is_closed")
        if closed is not None and getattr(closed, "called", False) and getattr(closed, "result", None) is protocol:
            del protocol.is_closed


class RoomKitDaphneServer(Server):
    """``daphne.server.Server`` whose periodic passes over connections run in slices."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._application_round = SlicedRound(APPLICATION_CHECK_PERIOD)
        self._timeout_round = SlicedRound(TIMEOUT_CHECK_PERIOD)

    def application_checker(self) -> None:
        # Daphne schedules this once, a second after start; from then on it ticks.
        now = time.monotonic()
        for protocol in self._application_round.next_slice(self.connections, now):
            self._check_application(protocol)
        pings = pings_per_tick(len(self.connections), self.ping_interval)
        for protocol in self._timeout_round.next_slice(self.connections, now):
            if protocol not in self.connections:
                continue
            if isinstance(protocol, WebSocketProtocol):
                pings -= check_websocket_timeouts(protocol, self, may_ping=pings > 0)
            else:
                protocol.check_timeouts()
        reactor.callLater(TICK_SECONDS, self.application_checker)

    def timeout_checker(self) -> None:
        """Done in slices by ``application_checker``."""

    def _check_application(self, protocol: Any) -> None:
        # Daphne's application_checker, for one connection.
        details = self.connections.get(protocol)
        if details is None:
            return
        disconnected = details.get("disconnected", None)
        application_instance = details.get("application_instance", None)
        if disconnected and time.time() - disconnected > self.application_close_timeout:
            if application_instance and not application_instance.done():
                logger.warning(
                    "Application instance %r for connection %s took too long to shut down and was killed.",
                    application_instance,
                    repr(protocol),
                )
                application_instance.cancel()
        if application_instance and application_instance.done():
            try:
                exception = application_instance.exception()
            except (CancelledError, asyncio.CancelledError):
                pass
            else:
                if exception:
                    if isinstance(exception, KeyboardInterrupt):
                        self.stop()
                    else:
                        logger.error("Exception inside application: %s", exception, exc_info=exception)
                        if not disconnected:
                            protocol.handle_exception(exception)
            del self.connections[protocol]["application_instance"]
            application_instance = None
        if not application_instance and disconnected:
            del self.connections[protocol]
            _cut_cycles(protocol)


__all__ = ["RoomKitDaphneCLI", "RoomKitDaphneServer", "reactor"]


class RoomKitDaphneCLI(CommandLineInterface):
    """Daphne's command line, serving with ``RoomKitDaphneServer``."""

    server_class = RoomKitDaphneServer
