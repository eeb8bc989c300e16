"""The one retry-timing rule: jittered exponential backoff under a cap, and Retry-After in both forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from django.test import SimpleTestCase

from rooms.infra.backoff import backoff_delay, parse_retry_after, retry_delay

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


class BackoffTests(SimpleTestCase):
    def test_jitter_never_exceeds_the_maximum(self) -> None:
        for multiplier in (1.0, 1.5, 2.0, 10.0):
            for attempt in range(1, 40):
                for _ in range(50):
                    delay = backoff_delay(attempt, base=8.0, maximum=10.0, multiplier=multiplier)
                    self.assertLessEqual(delay, 10.0)
                    self.assertGreaterEqual(delay, 0.0)

    def test_each_retry_waits_between_half_and_all_of_its_ceiling(self) -> None:
        for attempt, ceiling in [(1, 0.5), (2, 1.5), (3, 4.5), (4, 13.5), (5, 20.0), (9, 20.0)]:
            delays = [backoff_delay(attempt, base=0.5, maximum=20.0, multiplier=3.0) for _ in range(200)]
            self.assertGreaterEqual(min(delays), ceiling / 2)
            self.assertLessEqual(max(delays), ceiling)
            self.assertGreater(max(delays) - min(delays), 0, "jittered, not a fixed delay")

    def test_a_huge_attempt_number_is_the_cap_not_an_overflow(self) -> None:
        self.assertLessEqual(backoff_delay(10_000, base=1.0, maximum=60.0, multiplier=100.0), 60.0)
        self.assertGreaterEqual(backoff_delay(10_000, base=1.0, maximum=60.0, multiplier=100.0), 30.0)

    def test_retry_after_replaces_the_backoff_and_is_capped(self) -> None:
        self.assertEqual(retry_delay(1, base=1.0, maximum=60.0, retry_after=42.0), 42.0)
        self.assertEqual(retry_delay(1, base=1.0, maximum=60.0, retry_after=3600.0), 60.0)
        self.assertEqual(retry_delay(1, base=1.0, maximum=60.0, retry_after=0.0), 0.0)
        self.assertLessEqual(retry_delay(1, base=1.0, maximum=60.0, retry_after=None), 1.0)


class RetryAfterTests(SimpleTestCase):
    def test_delay_seconds(self) -> None:
        self.assertEqual(parse_retry_after("120"), 120.0)
        self.assertEqual(parse_retry_after(" 0 "), 0.0)

    def test_http_date_in_the_preferred_format(self) -> None:
        header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)  # "Mon, 30 Nov 2026 12:01:30 GMT"
        self.assertEqual(parse_retry_after(header, now=NOW), 90.0)

    def test_http_date_in_the_obsolete_formats_recipients_must_accept(self) -> None:
        self.assertEqual(parse_retry_after("Monday, 30-Nov-26 12:00:30 GMT", now=NOW), 30.0)  # RFC 850
        self.assertEqual(parse_retry_after("Mon Nov 30 12:00:45 2026", now=NOW), 45.0)  # asctime

    def test_a_date_in_the_past_is_zero(self) -> None:
        self.assertEqual(parse_retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now=NOW), 0.0)

    def test_anything_else_is_none(self) -> None:
        for value in (None, "", "   ", "-5", "1.5", "soon", "Mon, 99 Foo 2026 99:99:99 GMT", "9" * 400 + "x"):
            with self.subTest(value=value):
                self.assertIsNone(parse_retry_after(value))
