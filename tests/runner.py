"""Test runner: background work runs inline so tests see its effects."""

from __future__ import annotations

from django.conf import settings
from django.test.runner import DiscoverRunner


class RoomKitTestRunner(DiscoverRunner):
    def setup_test_environment(self, **kwargs):
        super().setup_test_environment(**kwargs)
        settings.ROOMKIT_TASK_MODE = "inline"
