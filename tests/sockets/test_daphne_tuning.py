"""Daphne's passes over every connection, as ``manage.py serve`` runs them: in slices, with pings paced.

Driven tick by tick here with stand-ins for Daphne's WebSocket protocol (the
attributes and methods Daphne's own ``check_timeouts`` uses); the real server
runs them in ``tests/sockets/test_serve_tuning.py``.
"""

from __future__ import annotations

import math
import time

from django.test import SimpleTestCase

from roomkit_project.daphne_tuning import (
    TICK_SECONDS,
    SlicedRound,
    check_websocket_timeouts,
    pings_per_tick,
)


class FakeServer:
    websocket_timeout = 86400
    websocket_connect_timeout = 5
    ping_interval = 20


class FakeSocket:
    STATE_CONNECTING, STATE_OPEN = 0, 1

    def __init__(self, *, state: int = 1, opened_ago: float = 60.0, pinged_ago: float = 0.0) -> None:
        self.state = state
        self.socket_opened = time.time() - opened_ago
        self.last_ping = time.time() - pinged_ago
        self.pings = 0
        self.closed = self.rejected = False

    def duration(self) -> float:
        return time.time() - self.socket_opened

    def _sendAutoPing(self) -> None:
        self.pings += 1

    def serverClose(self) -> None:
        self.closed = True

    def serverReject(self) -> None:
        self.rejected = True


class SlicedRoundTest(SimpleTestCase):
    def test_every_connection_once_per_period_in_bounded_slices(self):
        connections = {FakeSocket(): {} for _ in range(10_000)}
        period = 1.0
        rounds = SlicedRound(period)
        ticks_per_period = round(period / TICK_SECONDS)
        visits: list[dict] = [{} for _ in range(3)]
        largest = 0
        for tick in range(3 * ticks_per_period):
            now = tick * TICK_SECONDS
            chunk = rounds.next_slice(connections, now)
            largest = max(largest, len(chunk))
            for protocol in chunk:
                seen = visits[int(now // period)]
                seen[protocol] = seen.get(protocol, 0) + 1
        for seen in visits:
            self.assertEqual(len(seen), len(connections))
            self.assertEqual(set(seen.values()), {1})
        self.assertLessEqual(largest, math.ceil(len(connections) / (ticks_per_period - 1)))


class PacedPingsTest(SimpleTestCase):
    def test_a_crowd_due_at_once_is_pinged_a_few_dozen_per_tick_and_all_within_an_interval(self):
        server = FakeServer()
        sockets = [FakeSocket(pinged_ago=21) for _ in range(10_000)]  # opened together: all due now
        connections = {s: {} for s in sockets}
        rounds = SlicedRound(2.0)
        budget = pings_per_tick(len(connections), server.ping_interval)
        self.assertLess(budget, 100)
        most = 0
        for tick in range(round(server.ping_interval / TICK_SECONDS)):
            pings = budget
            for protocol in rounds.next_slice(connections, tick * TICK_SECONDS):
                pings -= check_websocket_timeouts(protocol, server, may_ping=pings > 0)
            most = max(most, budget - pings)
        self.assertLessEqual(most, budget)
        self.assertEqual({s.pings for s in sockets}, {1})  # every one pinged, once, within one interval

    def test_timeouts_are_daphnes(self):
        server = FakeServer()
        slow_handshake = FakeSocket(state=FakeSocket.STATE_CONNECTING, opened_ago=6)
        too_old = FakeSocket(opened_ago=server.websocket_timeout + 1)
        due = FakeSocket(pinged_ago=21)
        not_due = FakeSocket(pinged_ago=5)
        for socket in (slow_handshake, too_old, not_due):
            check_websocket_timeouts(socket, server, may_ping=True)
        self.assertTrue(slow_handshake.rejected)
        self.assertTrue(too_old.closed)
        self.assertEqual(not_due.pings, 0)
        self.assertFalse(check_websocket_timeouts(due, server, may_ping=False))
        self.assertEqual(due.pings, 0)
        self.assertTrue(check_websocket_timeouts(due, server, may_ping=True))
        self.assertEqual(due.pings, 1)
        self.assertLess(time.time() - due.last_ping, 1)
