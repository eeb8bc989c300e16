"""``GET /healthz``: each moving part, 200 when all are up, 503 naming what is down."""

from __future__ import annotations

from unittest import skipUnless

from django.conf import settings
from django.test import TestCase, override_settings

from tests.channels_app.helpers import error_of


class HealthTests(TestCase):
    def test_embedded_mode_is_healthy(self) -> None:
        # The test runner runs tasks inline, i.e. in-process, as the embedded default does.
        self.assertNotEqual(settings.ROOMKIT_TASK_MODE, "celery")

        r = self.client.get("/healthz")

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json(), {"db": "ok", "channel_layer": "ok", "broker": "in-process"})

    @skipUnless(settings.REDIS_URL, "needs REDIS_URL (the scaled mode's broker)")
    def test_celery_mode_checks_the_broker(self) -> None:
        with override_settings(ROOMKIT_TASK_MODE="celery", CELERY_BROKER_URL=settings.REDIS_URL):
            r = self.client.get("/healthz")

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json(), {"db": "ok", "channel_layer": "ok", "broker": "ok"})

    @override_settings(ROOMKIT_TASK_MODE="celery", CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    def test_unreachable_broker_is_503_naming_it(self) -> None:
        r = self.client.get("/healthz")

        self.assertEqual(r.status_code, 503, r.content)
        body = r.json()
        self.assertEqual(body["down"], ["broker"])
        self.assertTrue(body["broker"].startswith("down"), body)
        self.assertEqual((body["db"], body["channel_layer"]), ("ok", "ok"))

    def test_other_methods_are_405_json(self) -> None:
        for method in ("post", "put", "delete"):
            with self.subTest(method=method):
                error_of(self, getattr(self.client, method)("/healthz"), 405, "method_not_allowed")
