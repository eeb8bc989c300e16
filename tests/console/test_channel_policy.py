"""The channel page's delivery policy: superusers set retry, breaker and rate limits with fields;
bad values are refused on the field and change nothing; everyone who may see the channel sees
the effective policy and the breaker's state."""

from __future__ import annotations

import time

from django.test import TestCase

from channels_app import resilience
from channels_app.delivery_policy import parse_delivery_policy
from rooms.models import Channel
from tests.console.helpers import csrf_post, logged_in, make_user, operator, sms_and_web_channels

PAGE = "/admin/rooms/channel/sms/change/"


def form_data(**policy: str) -> dict[str, str]:
    """The change form as a browser posts it (every field, blanks included)."""
    data = {
        "id": "sms",
        "name": "SMS",
        "channel_type": "sms",
        "category": "transport",
        "provider": "http",
        "config": '{"url": "http://127.0.0.1:9/never"}',
        "capabilities": "{}",
        "creates_rooms": "on",
        "enabled": "on",
        "new_secrets": "",
    }
    for name in (
        "retry_max_retries",
        "retry_base_delay_seconds",
        "retry_max_delay_seconds",
        "retry_multiplier",
        "circuit_breaker_failure_threshold",
        "circuit_breaker_recovery_timeout_seconds",
        "rate_limit_per_second",
        "rate_limit_per_minute",
        "rate_limit_per_hour",
    ):
        data[name] = policy.get(name, "")
    return data


class ChannelPolicyAdminTests(TestCase):
    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        sms_and_web_channels()
        # The http provider requires its signing secret: without it no save of the channel is accepted.
        channel = Channel.objects.get(pk="sms")
        channel.set_secrets({"signing_secret": "policy-test-secret"})
        channel.save()
        self.root = logged_in(make_user("root", superuser=True))

    def test_the_form_offers_every_knob_and_the_page_shows_the_defaults_in_effect(self) -> None:
        html = self.root.get(PAGE).content.decode()
        for name in ("retry_max_retries", "circuit_breaker_recovery_timeout_seconds", "rate_limit_per_hour"):
            self.assertIn(f'name="{name}"', html)
        self.assertIn("4 retries (5 attempts)", html)
        self.assertIn("opens after 5 consecutive", html)
        self.assertIn("no limit", html)
        self.assertIn("closed, 0 consecutive failure(s)", html)

    def test_a_superuser_sets_the_policy_and_the_page_shows_it_in_effect(self) -> None:
        response = csrf_post(
            self.root,
            PAGE,
            form_data(
                retry_max_retries="2",
                retry_base_delay_seconds="0.5",
                retry_max_delay_seconds="20",
                retry_multiplier="3",
                circuit_breaker_failure_threshold="3",
                circuit_breaker_recovery_timeout_seconds="45",
                rate_limit_per_second="0.2",
                rate_limit_per_minute="30",
            ),
        )

        self.assertEqual(response.status_code, 302, response.content[:2000])
        config = Channel.objects.get(pk="sms").config
        self.assertEqual(
            config,
            {
                "url": "http://127.0.0.1:9/never",
                "retry": {"max_retries": 2, "base_delay_seconds": 0.5, "max_delay_seconds": 20.0, "multiplier": 3.0},
                "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 45.0},
                "rate_limit": {"per_second": 0.2, "per_minute": 30.0},
            },
        )
        policy = parse_delivery_policy(config)
        self.assertEqual([str(w) for w in policy.rate_limit.windows()], ["1 per 5 s", "30 per 60 s"])
        html = self.root.get(PAGE).content.decode()
        self.assertIn("2 retries (3 attempts)", html)
        self.assertIn("opens after 3 consecutive", html)
        self.assertIn("1 per 5 s, 30 per 60 s", html)
        self.assertIn('name="rate_limit_per_second" value="0.2"', html)
        self.assertNotIn("&quot;retry&quot;", html, "the sections are edited with the fields, not in the JSON")

    def test_blank_fields_leave_the_defaults(self) -> None:
        response = csrf_post(self.root, PAGE, form_data())

        self.assertEqual(response.status_code, 302, response.content[:2000])
        self.assertEqual(Channel.objects.get(pk="sms").config, {"url": "http://127.0.0.1:9/never"})

    def test_bad_values_are_refused_on_their_field_and_change_nothing(self) -> None:
        before = Channel.objects.get(pk="sms").config
        cases = {
            "rate_limit_per_second": {"rate_limit_per_second": "0"},
            "circuit_breaker_recovery_timeout_seconds": {"circuit_breaker_recovery_timeout_seconds": "0"},
            "retry_max_retries": {"retry_max_retries": "-1"},
            "rate_limit_per_hour": {"rate_limit_per_hour": "0.0001"},
            "retry_multiplier": {"retry_multiplier": "0.5"},
        }
        for field, values in cases.items():
            with self.subTest(field):
                response = csrf_post(self.root, PAGE, form_data(**values))
                self.assertEqual(response.status_code, 200)
                self.assertIn(field, response.context["adminform"].form.errors)
                self.assertEqual(Channel.objects.get(pk="sms").config, before)

    def test_a_base_delay_above_the_max_is_refused(self) -> None:
        response = csrf_post(self.root, PAGE, form_data(retry_base_delay_seconds="90", retry_max_delay_seconds="60"))

        self.assertEqual(response.status_code, 200)
        self.assertIn("base_delay_seconds must not exceed max_delay_seconds", response.content.decode())
        self.assertEqual(Channel.objects.get(pk="sms").config, {"url": "http://127.0.0.1:9/never"})

    def test_policy_sections_in_the_config_json_are_refused(self) -> None:
        data = form_data()
        data["config"] = '{"url": "http://127.0.0.1:9/never", "retry": {"max_retries": 1}}'

        response = csrf_post(self.root, PAGE, data)

        self.assertEqual(response.status_code, 200)
        self.assertIn("config", response.context["adminform"].form.errors)
        self.assertNotIn("retry", Channel.objects.get(pk="sms").config)

    def test_a_config_set_with_the_old_key_shows_in_the_fields(self) -> None:
        Channel.objects.filter(pk="sms").update(config={"url": "http://x", "retry": {"max_attempts": 3}})

        html = self.root.get(PAGE).content.decode()

        self.assertIn('name="retry_max_retries" value="2"', html)
        self.assertIn("2 retries (3 attempts)", html)

    def test_an_invalid_stored_policy_stays_visible_and_is_never_dropped_unseen(self) -> None:
        stored = {"url": "http://x", "retry": {"max_retries": -5}}
        Channel.objects.filter(pk="sms").update(config=stored)

        html = self.root.get(PAGE).content.decode()
        self.assertIn("&quot;max_retries&quot;: -5", html, "shown in the config JSON")
        self.assertIn("4 retries (5 attempts)", html, "deliveries run under the defaults meanwhile")
        data = form_data()
        data["config"] = '{"url": "http://x", "retry": {"max_retries": -5}}'
        response = csrf_post(self.root, PAGE, data)

        self.assertEqual(response.status_code, 200)
        self.assertEqual(Channel.objects.get(pk="sms").config, stored)

    def test_the_page_shows_the_breaker_open_then_half_open(self) -> None:
        csrf_post(
            self.root,
            PAGE,
            form_data(circuit_breaker_failure_threshold="2", circuit_breaker_recovery_timeout_seconds="0.3"),
        )
        policy = parse_delivery_policy(Channel.objects.get(pk="sms").config).circuit_breaker
        resilience.breaker_record("sms", policy, "failure")
        self.assertIn("closed, 1 consecutive failure(s)", self.root.get(PAGE).content.decode())
        resilience.breaker_record("sms", policy, "failure")

        self.assertIn("open, 2 consecutive failure(s), opened at", self.root.get(PAGE).content.decode())
        deadline = time.monotonic() + 5
        while resilience.breaker_state("sms", policy).state != "half-open":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        self.assertIn("half-open, 2 consecutive failure(s)", self.root.get(PAGE).content.decode())

    def test_operators_see_the_effective_policy_but_no_fields(self) -> None:
        from django.contrib.auth.models import Group, Permission

        client = logged_in(operator())
        Group.objects.get(name="operator").permissions.add(Permission.objects.get(codename="view_channel"))

        response = client.get(PAGE)

        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertIn("4 retries (5 attempts)", html)
        self.assertIn("closed, 0 consecutive failure(s)", html)
        self.assertNotIn('name="retry_max_retries"', html)
        before = Channel.objects.get(pk="sms").config
        self.assertEqual(csrf_post(client, PAGE, form_data(retry_max_retries="9")).status_code, 403)
        self.assertEqual(Channel.objects.get(pk="sms").config, before)
