"""Garbage collection for a server process that holds thousands of open sockets.

CPython's collector is generational: young objects are scanned often and
cheaply, and a full collection scans every tracked object. An open chat
socket holds ~140 of them (Twisted and autobahn protocol state, asyncio tasks
and futures, the consumer, its room hub), so with 10,000 sockets open a full
collection walks 1.4 million objects and stops the event loop, and every
thread, for one to two seconds. One comes whenever the objects that survived
young collections since the last one reach a quarter of the old ones: with
sockets opening, pinging and closing, every minute or so, and each message
that arrives meanwhile waits for it.

``gc_tune_for_serving`` (called by ``manage.py serve``):

- every ``FREEZE_INTERVAL_SECONDS``, on the event loop, a full collection
  followed by ``gc.freeze()``: whatever survived is moved out of the
  collector's reach, so neither that collection nor the automatic ones ever
  scan more than what was allocated since the last one and is still alive,
  however many sockets are open. With 10,000 idle sockets that is a few
  thousand objects a second (each keep-alive ping replaces a handful of
  objects its socket keeps until the next one): a few milliseconds;
- young collections a tenth as often (``YOUNG_THRESHOLD``, CPython's default
  is 700): short-lived objects have time to die by reference counting
  before a collection would promote them.

Frozen objects are still freed by reference counting as soon as nothing
refers to them; only garbage in reference cycles among them stays. A closed
socket leaves none: the consumer, its hub and the channel layer's state hold
no cycles, and the two Daphne leaves are cut when it forgets a connection
(``roomkit_project.daphne_server``). What can stay is an object that was
alive at a freeze and later died in a cycle; ``bench/ws_idle.py`` measures
it (unfreeze, collect and count at the end of a run).
"""

from __future__ import annotations

import asyncio
import gc
import logging

logger = logging.getLogger(__name__)

FREEZE_INTERVAL_SECONDS = 1.0
YOUNG_THRESHOLD = 7_000


def collect_and_freeze() -> int:
    """Collect what is not frozen, then freeze the survivors; returns how many unreachable objects were found."""
    found = gc.collect()
    gc.freeze()
    return found


def gc_tune_for_serving(loop: asyncio.AbstractEventLoop) -> None:
    """Apply the policy above to this process; the periodic freeze runs on ``loop`` (the one serving sockets)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    collect_and_freeze()

    def tick() -> None:
        try:
            collect_and_freeze()
        except Exception:  # never let the policy stop the loop
            logger.exception("periodic garbage collection failed")
        loop.call_later(FREEZE_INTERVAL_SECONDS, tick)

    loop.call_later(FREEZE_INTERVAL_SECONDS, tick)
