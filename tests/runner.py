"""Test runner: background work runs inline so tests see its effects."""

from __future__ import annotations

import gc

from django.conf import settings
from django.test.runner import DiscoverRunner


class RoomKitTestRunner(DiscoverRunner):
    def setup_test_environment(self, **kwargs):
        super().setup_test_environment(**kwargs)
        settings.ROOMKIT_TASK_MODE = "inline"
        # The suite starts hundreds of chat sessions from one address within a
        # minute; the throttle's own tests set the limit they test.
        settings.ROOMKIT_CHAT_SESSION_RATE = ""

    def teardown_databases(self, old_config, **kwargs):
        # Socket tests run consumers on event loops whose worker threads (the
        # chat socket's messages run on pool threads) each opened a database
        # connection. The threads are gone; collecting them closes their
        # connections, which PostgreSQL would otherwise count as users of the
        # test database it is asked to drop.
        gc.collect()
        super().teardown_databases(old_config, **kwargs)
