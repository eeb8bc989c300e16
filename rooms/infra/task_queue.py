"""Where background work runs: Celery, an in-process pool, or inline.

Every task is a Celery task (``@shared_task``) taking ids, and its row is the
source of truth (the outbox); this module only decides where it executes:

- ``celery`` (``REDIS_URL`` set): ``apply_async`` to the broker; workers run it.
- ``thread`` (embedded default): a small in-process pool with a timer heap,
  so ``make run`` needs no broker and the request that enqueued returns at once.
- ``inline`` (tests): run at once in the caller, countdowns left to the sweeper.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """A thread pool plus one timer thread for delayed and periodic jobs."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roomkit-task")
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cv = threading.Condition()
        self._timer_thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pool.submit(self._run, fn, args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        with self._cv:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._counter), lambda: self.submit(fn, *args)))
            self._ensure_timer_thread()
            self._cv.notify()

    def every(self, interval: float, fn: Callable[[], Any]) -> None:
        def tick() -> None:
            self.submit(fn)
            self.call_later_raw(interval, tick)

        self.call_later_raw(interval, tick)

    def call_later_raw(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._counter), fn))
            self._ensure_timer_thread()
            self._cv.notify()

    def _ensure_timer_thread(self) -> None:
        if self._timer_thread is None:
            self._timer_thread = threading.Thread(target=self._timer_loop, name="roomkit-timers", daemon=True)
            self._timer_thread.start()

    def _timer_loop(self) -> None:
        while True:
            with self._cv:
                while not self._timers or self._timers[0][0] > time.monotonic():
                    timeout = self._timers[0][0] - time.monotonic() if self._timers else None
                    self._cv.wait(timeout)
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                logger.exception("embedded timer job failed")

    @staticmethod
    def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        close_old_connections()
        try:
            fn(*args)
        except Exception:
            logger.exception("embedded task %s failed", getattr(fn, "name", fn))
        finally:
            close_old_connections()


_worker: EmbeddedWorker | None = None
_worker_lock = threading.Lock()


def embedded_worker() -> EmbeddedWorker:
    global _worker
    if _worker is None:
        with _worker_lock:
            if _worker is None:
                _worker = EmbeddedWorker()
    return _worker


def enqueue(task: Any, *args: Any, countdown: float | None = None) -> None:
    """Run Celery ``task`` with ``args`` wherever this deployment runs work."""
    mode = settings.ROOMKIT_TASK_MODE
    if mode == "celery":
        task.apply_async(args=args, countdown=countdown)
    elif mode == "inline":
        if countdown:
            # A retry later: the row records next_attempt_at and the outbox
            # sweeper (run by tests explicitly) picks it up.
            return
        task.run(*args)
    elif mode == "off":
        # Rows are written; nothing executes them in this process (bench/tools).
        return
    elif countdown:
        embedded_worker().call_later(countdown, task.run, *args)
    else:
        embedded_worker().submit(task.run, *args)


def start_embedded_beat(schedule: dict[str, dict] | None = None) -> None:
    """Run the Celery beat schedule in-process (embedded mode only)."""
    schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
    worker = embedded_worker()
    for entry in schedule.values():
        # Our task names are their dotted import paths.
        task = import_string(entry["task"])
        worker.every(float(entry["schedule"]), task.run)
