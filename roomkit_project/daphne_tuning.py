"""Costs in Daphne that grow with the sockets it holds and buy nothing.

autobahn (Daphne's WebSocket protocol) builds the arguments of its debug log
lines before calling the logger, even when debug logging is off: for every
frame it sends, ``sendData`` colours three values with ``click.style``
(``hltype``/``hlval``, about 10 µs a frame here, a tenth of the cost of a
delivered frame), its Twisted adapter does the same for every chunk it
receives (each keep-alive pong of every idle socket), and every new
connection pretty-prints its whole configuration (``pformat``). While
autobahn's log level is above debug, we give its protocol and Twisted adapter
modules plain versions of those helpers: same log text, without colour, never
computed for nothing that matters. With debug logging on, nothing changes.

Below that: Daphne's passes over every connection cut into slices, with the
keep-alive pings paced (used by ``roomkit_project.daphne_server``).
"""

from __future__ import annotations

import math
import time
from typing import Any

_DEBUG_LEVELS = {"debug", "trace"}


def _name(obj: Any) -> str:
    return f"<{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}>"


def skip_autobahn_debug_formatting() -> bool:
    """Under Daphne, install the plain helpers unless autobahn logs at debug level; True if installed."""
    import sys

    if "daphne.server" not in sys.modules:
        return False  # not serving under Daphne (tests, commands): leave autobahn alone
    import txaio
    from autobahn.twisted import websocket as twisted_adapter
    from autobahn.websocket import protocol

    if txaio.get_global_log_level() in _DEBUG_LEVELS:
        return False
    protocol.hltype = twisted_adapter.hltype = _name
    protocol.hlval = twisted_adapter.hlval = str
    protocol.pformat = repr
    return True


# --- Daphne's periodic passes over every connection, in slices ------------------------
# (used by roomkit_project.daphne_server, which ``manage.py serve`` runs)

TICK_SECONDS = 0.05
# Keep-alive pings one tick may send: twice the average a tick needs
# (connections × tick ÷ ping interval), and at least this many.
MIN_PINGS_PER_TICK = 10


class SlicedRound:
    """Visits a snapshot of the connections once per ``period``, a slice per ``TICK_SECONDS``.

    Daphne visits every connection in one go (every second to reap finished
    applications, every two seconds for timeouts and pings); with 10,000
    sockets that holds the loop for tens of milliseconds each time.
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self.pending: list[Any] = []
        self.position = 0
        self.per_tick = 0
        self.started = -period

    def next_slice(self, connections: dict, now: float) -> list[Any]:
        if self.position >= len(self.pending):
            self.pending = []
            if now - self.started < self.period:
                return []
            self.pending, self.position, self.started = list(connections), 0, now
            ticks = max(1, round(self.period / TICK_SECONDS) - 1)  # done within the period
            self.per_tick = -(-len(self.pending) // ticks)
        chunk = self.pending[self.position : self.position + self.per_tick]
        self.position += len(chunk)
        return chunk


def pings_per_tick(connections: int, ping_interval: float) -> int:
    """How many keep-alive pings one tick may send."""
    return max(MIN_PINGS_PER_TICK, math.ceil(2 * connections * TICK_SECONDS / max(ping_interval, TICK_SECONDS)))


def check_websocket_timeouts(protocol: Any, server: Any, *, may_ping: bool) -> bool:
    """Daphne's ``WebSocketProtocol.check_timeouts``, with the keep-alive ping only if ``may_ping``; True if it pinged.

    Sockets that opened together fall due for their ping together, every
    ping interval: sent in one go they hold the loop (each ping is a frame
    written, a pong read and parsed). A ping that may not go now goes when
    the round next comes by, two seconds later, so a crowd spreads out.
    """
    if protocol.duration() > server.websocket_timeout and server.websocket_timeout >= 0:
        protocol.serverClose()
    if protocol.state == protocol.STATE_CONNECTING:
        if protocol.duration() > server.websocket_connect_timeout:
            protocol.serverReject()
    elif protocol.state == protocol.STATE_OPEN and may_ping and time.time() - protocol.last_ping > server.ping_interval:
        protocol._sendAutoPing()
        protocol.last_ping = time.time()
        return True
    return False
