"""Test runner: background work runs inline so tests see its effects.

``ROOMKIT_TEST_DURATIONS=N`` prints the N slowest tests (and classes, with
their set-up) at the end, to keep the suite fast (Python 3.11's unittest has
no ``--durations``).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import unittest

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections
from django.test.runner import DiscoverRunner


class _TimedResult(unittest.TextTestResult):
    durations: dict[str, float] = {}

    def startTest(self, test: unittest.TestCase) -> None:
        self._started = time.perf_counter()
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        self.durations[test.id()] = time.perf_counter() - self._started


class RoomKitTestRunner(DiscoverRunner):
    def setup_test_environment(self, **kwargs):
        super().setup_test_environment(**kwargs)
        settings.ROOMKIT_TASK_MODE = "inline"
        # The suite starts hundreds of chat sessions from one address within a
        # minute; the throttle's own tests set the limit they test.
        settings.ROOMKIT_CHAT_SESSION_RATE = ""
        # The scripted demo agent's reading pace is for people; tests that watch it stream set their own.
        settings.ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS = 0
        settings.ROOMKIT_SCRIPTED_WORD_DELAY_MS = 0
        # Operators' logins are made by the hundred; the project's hasher
        # (PBKDF2, ~1 s on this class of machine) would be most of the suite.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def get_resultclass(self):
        if os.environ.get("ROOMKIT_TEST_DURATIONS"):
            return _TimedResult
        return super().get_resultclass()

    def run_suite(self, suite, **kwargs):
        started = time.perf_counter()
        result = super().run_suite(suite, **kwargs)
        top = int(os.environ.get("ROOMKIT_TEST_DURATIONS") or 0)
        if top:
            per_class: dict[str, float] = {}
            for name, seconds in _TimedResult.durations.items():
                cls = name.rsplit(".", 1)[0]
                per_class[cls] = per_class.get(cls, 0.0) + seconds
            print(f"\nwhole run {time.perf_counter() - started:.1f} s; slowest tests:")
            for name, seconds in sorted(_TimedResult.durations.items(), key=lambda kv: -kv[1])[:top]:
                print(f"  {seconds:7.2f} s  {name}")
            print("slowest classes (their tests' time):")
            for name, seconds in sorted(per_class.items(), key=lambda kv: -kv[1])[:top]:
                print(f"  {seconds:7.2f} s  {name}")
        return result

    def teardown_databases(self, old_config, **kwargs):
        # Socket tests run consumers on event loops whose worker threads (the
        # chat socket's messages run on pool threads) each opened a database
        # connection. The threads are gone; collecting them closes their
        # connections, which PostgreSQL would otherwise count as users of the
        # test database it is asked to drop.
        gc.collect()
        # Calls ran their speech and database work on the voice worker threads,
        # which live as long as the process: new ones replace them.
        voice_session = sys.modules.get("voice.session")
        if voice_session is not None:
            voice_session.workers_restart()
            gc.collect()
        # Tests that drive the ASGI application from asyncio.run reach the
        # database through sync_to_async's one long-lived thread: close its connection.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        # HTTP requests served in process (through roomkit_project.asgi) ran on
        # its pool's long-lived threads, which keep their connections open.
        asgi = sys.modules.get("roomkit_project.asgi")
        if asgi is not None:
            asgi.django_asgi_app.close_connections()
        super().teardown_databases(old_config, **kwargs)
