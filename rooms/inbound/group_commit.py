"""Group commit: concurrent callers share one transaction instead of queueing for the lock.

Every message costs its transaction a commit (on PostgreSQL a WAL flush,
milliseconds on a disk that really syncs) and a turn at the room's row lock
(SQLite has one writer lock for the whole file). When several threads of one
process bring messages at the same time, having each wait for the lock and
commit alone spends most of the time waiting. Here they queue instead: the
caller at the head of the queue takes everything queued behind it as one
batch, processes it in one transaction on its own connection, hands every
caller its own outcome and wakes the next head. A caller that finds the queue
empty is the head at once and runs alone, so a lone caller pays nothing but a
lock; a crowd pays one commit per batch. (The writer queue of LevelDB and the
group commit of databases' own logs work the same way.)

Where committing means waiting on a disk while other transactions may go on
(PostgreSQL), the head hands the queue over just before its commit
(``hand_over``): the next batch gathers and starts while this one's log flush
is under way, and waits, if it must, only on the database's own row locks.

The queue knows nothing about messages: ``run_batch`` gets the items and
returns one outcome per item, a result or the exception to raise in that
caller's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T]):
    __slots__ = ("item", "cond", "leading", "done", "outcome")

    def __init__(self, item: T, lock: threading.Lock) -> None:
        self.item = item
        self.cond = threading.Condition(lock)
        self.leading = False
        self.done = False
        self.outcome: object = None


class GroupCommit(Generic[T, R]):
    def __init__(self, run_batch: Callable[[Sequence[T]], list[R | BaseException]], *, max_batch: int = 64) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T]] = []
        self._local = threading.local()

    def submit(self, item: T) -> R:
        """Process ``item`` (possibly in another caller's batch) and return its result or raise its error."""
        if getattr(self._local, "batch", None) is not None:
            # Called again from inside this thread's own batch (work done on
            # commit that sends a message, as an inline AI reply does): the
            # batch is this thread's, so waiting for it would wait forever.
            outcome = self._run_batch([item])[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        me = _Waiter(item, self._lock)
        with self._lock:
            self._queue.append(me)
            me.leading = len(self._queue) == 1
            while not me.done and not me.leading:
                me.cond.wait()
            if not me.done:
                batch = self._queue[: self._max_batch]
        if not me.done:
            self._lead(batch)
        if isinstance(me.outcome, BaseException):
            raise me.outcome
        return me.outcome  # type: ignore[return-value]

    def hand_over(self) -> None:
        """Let the next batch start while this thread finishes its own (its commit, typically).

        For a database whose commit waits on a disk flush while other
        transactions may proceed up to this one's locks (PostgreSQL), the next
        batch can be gathered and sent meanwhile. A no-op outside a batch and
        when called again.
        """
        batch = getattr(self._local, "batch", None)
        if batch is None or self._local.handed_over:
            return
        self._local.handed_over = True
        with self._lock:
            self._next(batch)

    def _next(self, batch: list[_Waiter[T]]) -> None:
        # Under the lock: the batch leaves the queue and the caller now at its head leads.
        del self._queue[: len(batch)]
        if self._queue:
            head = self._queue[0]
            head.leading = True
            head.cond.notify()

    def _lead(self, batch: list[_Waiter[T]]) -> None:
        self._local.batch, self._local.handed_over = batch, False
        try:
            outcomes: list = self._run_batch([w.item for w in batch])
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch must hear of it
            outcomes = [exc] * len(batch)
        finally:
            handed_over = self._local.handed_over
            self._local.batch = None
        with self._lock:
            if not handed_over:
                self._next(batch)
            for waiter, outcome in zip(batch, outcomes, strict=True):
                waiter.outcome = outcome
                waiter.done = True
                waiter.cond.notify()
