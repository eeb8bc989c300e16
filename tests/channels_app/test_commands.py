"""Management commands of the channels side: add_channel (checked per provider), simulate_inbound, seed_demo.

Run with call_command and their stdout captured, then checked against the rows
and against the HTTP edge they configure.
"""

from __future__ import annotations

import json
from io import StringIO

from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from channels_app.providers import base as provider_registry
from channels_app.providers import provider_names, register_provider
from rooms.models import Channel, RoomEvent
from tests.channels_app.helpers import row_counts

# Real providers for tests (they send over HTTP, verify their webhooks), defined with the channel admin's tests.
from tests.console.test_channel_admin import TextBridgeProvider, TokenLinkProvider
from tests.support import make_channel, post_signed

PLAINTEXT = "TopSecret-0451-plaintext"
# The http provider requires its signing secret (channel_settings_errors).
SIGNED = ("--secret", "signing_secret=s")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


class AddChannelTests(TestCase):
    def test_create_stores_type_provider_config_and_an_encrypted_secret(self) -> None:
        out = run(
            "add_channel",
            "crm",
            "--type",
            "webhook",
            "--provider",
            "http",
            "--config",
            '{"url": "http://127.0.0.1:9/hook", "retry": {"max_attempts": 2}}',
            "--secret",
            f"signing_secret={PLAINTEXT}",
            "--name",
            "CRM",
        )

        self.assertIn("channel crm created", out)
        self.assertIn("signing_secret", out)
        self.assertNotIn(PLAINTEXT, out)
        channel = Channel.objects.get(pk="crm")
        self.assertEqual((channel.channel_type, channel.provider, channel.name), ("webhook", "http", "CRM"))
        self.assertEqual(channel.category, "transport")
        self.assertEqual(channel.config, {"url": "http://127.0.0.1:9/hook", "retry": {"max_attempts": 2}})
        self.assertEqual(channel.get_secret("signing_secret"), PLAINTEXT)
        self.assertTrue(channel.secrets_encrypted)
        self.assertNotIn(PLAINTEXT, channel.secrets_encrypted)
        self.assertNotIn("signing_secret", channel.secrets_encrypted, "names are encrypted too")
        self.assertNotIn(PLAINTEXT, repr(channel))

    def test_the_stored_secret_verifies_real_webhooks(self) -> None:
        run("add_channel", "crm", "--type", "webhook", "--provider", "http", "--secret", f"signing_secret={PLAINTEXT}")
        payload = {"id": "m-1", "sender": "alice", "text": "hi"}

        with self.captureOnCommitCallbacks(execute=True):
            good = post_signed(self.client, "/webhooks/crm/", payload, PLAINTEXT)
        bad = post_signed(self.client, "/webhooks/crm/", {**payload, "id": "m-2"}, "guess")

        self.assertEqual(good.status_code, 200, good.content)
        self.assertEqual(bad.status_code, 403)

    def test_update_replaces_config_and_merges_secrets(self) -> None:
        run(
            "add_channel",
            "crm",
            "--type",
            "webhook",
            "--provider",
            "http",
            "--config",
            '{"url": "http://a"}',
            "--secret",
            "signing_secret=one",
        )

        out = run(
            "add_channel",
            "crm",
            "--type",
            "webhook",
            "--provider",
            "http",
            "--config",
            '{"timeout_seconds": 3}',
            "--secret",
            "api_key=k=v",
        )

        self.assertIn("channel crm updated", out)
        self.assertEqual(Channel.objects.filter(pk="crm").count(), 1)
        channel = Channel.objects.get(pk="crm")
        self.assertEqual(channel.config, {"timeout_seconds": 3})
        self.assertEqual(channel.get_secret("signing_secret"), "one")
        self.assertEqual(channel.get_secret("api_key"), "k=v", "only the first '=' separates name and value")
        self.assertEqual(channel.secret_names, ["api_key", "signing_secret"])

    def test_update_of_a_secret_keeps_the_rest(self) -> None:
        run(
            "add_channel",
            "crm",
            "--type",
            "webhook",
            "--provider",
            "http",
            "--config",
            '{"url": "http://a"}',
            "--secret",
            "signing_secret=one",
        )

        run("add_channel", "crm", "--type", "webhook", "--secret", "signing_secret=two")

        channel = Channel.objects.get(pk="crm")
        self.assertEqual(channel.get_secret("signing_secret"), "two")
        self.assertEqual(channel.config, {"url": "http://a"}, "no --config keeps the config")
        self.assertEqual(channel.provider, "http", "no --provider keeps the provider (the webhook must keep working)")

    def test_a_webhook_keeps_working_after_its_secret_is_rotated(self) -> None:
        run("add_channel", "crm", "--type", "webhook", "--provider", "http", "--secret", "signing_secret=one")
        run("add_channel", "crm", "--type", "webhook", "--secret", "signing_secret=two")

        with self.captureOnCommitCallbacks(execute=True):
            new = post_signed(self.client, "/webhooks/crm/", {"id": "m-1", "sender": "a", "text": "hi"}, "two")
        old = post_signed(self.client, "/webhooks/crm/", {"id": "m-2", "sender": "a", "text": "hi"}, "one")

        self.assertEqual((new.status_code, old.status_code), (200, 403), new.content)

    def test_ai_type_defaults_to_the_intelligence_category(self) -> None:
        run("add_channel", "agent-1", "--type", "ai")

        self.assertEqual(Channel.objects.get(pk="agent-1").category, "intelligence")

    def test_bad_input_is_a_command_error_and_writes_nothing(self) -> None:
        cases = {
            "config not JSON": ["crm", "--type", "webhook", "--config", "{url: nope}"],
            "config not an object": ["crm", "--type", "webhook", "--config", "[1, 2]"],
            "unknown type": ["crm", "--type", "pigeon"],
            "unknown provider": ["crm", "--type", "webhook", "--provider", "no-such-vendor"],
            "secret without =": ["crm", "--type", "webhook", "--secret", "signing_secret"],
            "secret without a name": ["crm", "--type", "webhook", "--secret", "=value"],
            "id not a slug": ["not a slug!", "--type", "webhook"],
        }
        for label, args in cases.items():
            with self.subTest(label):
                with self.assertRaises(CommandError):
                    run("add_channel", *args)
                self.assertFalse(Channel.objects.exists())

    def test_a_refused_update_leaves_the_channel_as_it_was(self) -> None:
        run(
            "add_channel",
            "crm",
            "--type",
            "webhook",
            "--provider",
            "http",
            "--config",
            '{"url": "http://a"}',
            "--secret",
            "signing_secret=one",
        )

        with self.assertRaises(CommandError):
            run("add_channel", "crm", "--type", "webhook", "--provider", "nope", "--secret", "signing_secret=two")

        channel = Channel.objects.get(pk="crm")
        self.assertEqual((channel.provider, channel.get_secret("signing_secret")), ("http", "one"))


class AddChannelDeliveryPolicyTests(TestCase):
    POLICY = {
        "retry": {"max_retries": 6, "base_delay_seconds": 0.5, "max_delay_seconds": 20, "multiplier": 3},
        "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 45},
        "rate_limit": {"per_second": 0.2, "per_minute": 10, "per_hour": 100},
    }

    def test_a_full_policy_is_accepted_and_stored_as_given(self) -> None:
        config = {"url": "http://127.0.0.1:9/hook", **self.POLICY}

        run("add_channel", "crm", "--type", "webhook", "--provider", "http", "--config", json.dumps(config), *SIGNED)

        self.assertEqual(Channel.objects.get(pk="crm").config, config)

    def test_bad_policy_values_are_refused_naming_the_key_and_nothing_is_written(self) -> None:
        cases = {
            "negative rate": ({"rate_limit": {"per_minute": -1}}, "rate_limit.per_minute"),
            "zero threshold": ({"circuit_breaker": {"failure_threshold": 0}}, "circuit_breaker.failure_threshold"),
            "unknown key": ({"retry": {"max_retry": 3}}, "retry.max_retry: unknown key"),
            "a string number": ({"retry": {"max_delay_seconds": "60"}}, "retry.max_delay_seconds"),
            "base above max": (
                {"retry": {"base_delay_seconds": 90, "max_delay_seconds": 60}},
                "base_delay_seconds must not exceed",
            ),
            "section not an object": ({"rate_limit": 5}, "rate_limit: must be a JSON object"),
            "two different counts": ({"retry": {"max_retries": 2, "max_attempts": 5}}, "retry:"),
            "rate too small": ({"rate_limit": {"per_hour": 0.0001}}, "below one per 7 days"),
            "rate too large": (
                {"rate_limit": {"per_hour": 200_000}},
                "rate_limit.per_hour: Input should be less than or equal to 100000",
            ),
        }
        for label, (config, expected) in cases.items():
            with self.subTest(label):
                with self.assertRaises(CommandError) as raised:
                    run("add_channel", "crm", "--type", "webhook", "--provider", "http", "--config", json.dumps(config), *SIGNED)
                self.assertIn("invalid delivery policy", str(raised.exception))
                self.assertIn(expected, str(raised.exception))
                self.assertFalse(Channel.objects.exists())

    def test_a_refused_policy_leaves_the_channel_as_it_was(self) -> None:
        run("add_channel", "crm", "--type", "webhook", "--provider", "http", "--config", json.dumps(self.POLICY), *SIGNED)

        with self.assertRaises(CommandError):
            run("add_channel", "crm", "--type", "webhook", "--config", '{"rate_limit": {"per_second": 0}}')

        self.assertEqual(Channel.objects.get(pk="crm").config, self.POLICY)


@override_settings(PUBLIC_BASE_URL="https://rk.example.com")
class AddChannelProviderTests(TestCase):
    """add_channel checks a channel as the admin does (channel_settings_errors, through channel_upsert).

    The providers are the channel admin tests' real test providers, registered here and removed after.
    """

    SMS = ("tb", "--type", "sms", "--provider", "textbridge")
    COMPLETE = '{"account_id": "AC-1", "from": "+15550001000"}'

    def setUp(self) -> None:
        for cls in (TextBridgeProvider, TokenLinkProvider):
            register_provider(cls.name, cls)
            self.addCleanup(provider_registry._registry.pop, cls.name, None)
            self.addCleanup(provider_registry._instances.pop, cls.name, None)

    def test_a_complete_channel_is_created_and_its_webhook_urls_printed(self) -> None:
        out = run("add_channel", *self.SMS, "--config", self.COMPLETE, "--secret", f"api_key={PLAINTEXT}")

        self.assertIn("channel tb created (sms/textbridge; secrets: api_key)", out)
        self.assertIn("inbound webhook: https://rk.example.com/webhooks/tb/", out)
        self.assertIn("status webhook: https://rk.example.com/webhooks/tb/status/", out)
        self.assertNotIn(PLAINTEXT, out)
        self.assertEqual(Channel.objects.get(pk="tb").get_secret("api_key"), PLAINTEXT)

    def test_what_the_provider_needs_is_refused_naming_the_field_and_nothing_is_written(self) -> None:
        key = ("--secret", "api_key=k")
        cases = {
            "type not served": (
                ["tb", "--type", "voice", "--provider", "textbridge", "--config", self.COMPLETE, *key],
                "provider: provider 'textbridge' (TextBridge SMS) does not serve voice channels; providers for voice: "
                + ", ".join(provider_names("voice")),
            ),
            "required config": ([*self.SMS, "--config", '{"from": "+1555"}', *key], "config.account_id: Account ID is required"),
            "one_of group": (
                [*self.SMS, "--config", '{"account_id": "A"}', *key],
                "config.from: one of from, messaging_pool is required",
            ),
            "required secret": ([*self.SMS, "--config", self.COMPLETE], "secrets.api_key: secret api_key is required"),
            "empty secret": ([*self.SMS, "--config", self.COMPLETE, "--secret", "api_key="], "secrets.api_key: empty value"),
            "everything at once": (
                [*self.SMS, "--config", "{}"],
                "config.account_id: Account ID is required; config.from: one of from, messaging_pool is required; "
                "secrets.api_key: secret api_key is required",
            ),
        }
        for label, (args, expected) in cases.items():
            with self.subTest(label):
                with self.assertRaises(CommandError) as raised:
                    run("add_channel", *args)
                self.assertIn(expected, str(raised.exception))
                self.assertFalse(Channel.objects.exists())

    def test_an_update_is_checked_with_what_is_stored(self) -> None:
        run("add_channel", *self.SMS, "--config", self.COMPLETE, "--secret", "api_key=one")

        with self.assertRaisesMessage(CommandError, "config.account_id: Account ID is required"):
            run("add_channel", "tb", "--type", "sms", "--config", '{"from": "+15550001000"}')
        with self.assertRaisesMessage(CommandError, "does not serve voice channels"):
            run("add_channel", "tb", "--type", "voice")
        run("add_channel", "tb", "--type", "sms", "--secret", "api_key=two")

        channel = Channel.objects.get(pk="tb")
        self.assertEqual((channel.channel_type, channel.provider), ("sms", "textbridge"))
        self.assertEqual(channel.config, {"account_id": "AC-1", "from": "+15550001000"})
        self.assertEqual(channel.get_secret("api_key"), "two")

    def test_a_token_provider_gets_a_token_shown_only_when_asked_and_rotated_on_request(self) -> None:
        out = run("add_channel", "tl", "--type", "sms", "--provider", "tokenlink", "--secret", "api_key=k")

        token = Channel.objects.get(pk="tl").get_secret("webhook_token")
        self.assertGreaterEqual(len(token or ""), 32)
        self.assertNotIn(token, out)
        self.assertIn("inbound webhook: https://rk.example.com/webhooks/tl/?token=<hidden: add --show-webhook-token>", out)
        self.assertIn("this vendor does not sign its webhooks", out)

        shown = run("add_channel", "tl", "--type", "sms", "--show-webhook-token")
        self.assertIn(f"inbound webhook: https://rk.example.com/webhooks/tl/?token={token}", shown)
        self.assertIn(f"status webhook: https://rk.example.com/webhooks/tl/status/?token={token}", shown)
        self.assertEqual(Channel.objects.get(pk="tl").get_secret("webhook_token"), token, "an update keeps the token")

        run("add_channel", "tl", "--type", "sms", "--rotate-webhook-token")
        self.assertNotIn(Channel.objects.get(pk="tl").get_secret("webhook_token"), ("", None, token))

    def test_rotating_a_signing_provider_s_token_is_refused_and_changes_nothing(self) -> None:
        run("add_channel", *self.SMS, "--config", self.COMPLETE, "--secret", "api_key=one")

        with self.assertRaisesMessage(CommandError, "not verified by a webhook token"):
            run("add_channel", *self.SMS, "--secret", "api_key=two", "--rotate-webhook-token")

        channel = Channel.objects.get(pk="tb")
        self.assertEqual((channel.get_secret("api_key"), channel.secret_names), ("one", ["api_key"]))


class SimulateInboundTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-demo", channel_type="sms", provider="")

    def simulate(self, *args: str) -> dict:
        with self.captureOnCommitCallbacks(execute=True):
            return json.loads(run("simulate_inbound", "--channel", "sms-demo", *args))

    def test_prints_the_stored_event_as_json(self) -> None:
        result = self.simulate("--sender", "+15550001", "--text", "hello", "--name", "Ann")

        self.assertEqual(result["seq"], 1)
        self.assertIs(result["duplicate"], False)
        self.assertEqual(result["status"], "stored")
        event = RoomEvent.objects.get(pk=result["event_id"])
        self.assertEqual((event.room_id, event.content), (result["room_id"], {"type": "text", "body": "hello"}))
        self.assertEqual(event.source_participant.display_name, "Ann")

    def test_next_message_from_the_sender_takes_the_next_seq(self) -> None:
        first = self.simulate("--sender", "+15550001", "--text", "one")
        second = self.simulate("--sender", "+15550001", "--text", "two")

        self.assertEqual((second["room_id"], second["seq"]), (first["room_id"], 2))

    def test_repeat_with_the_same_id_is_a_duplicate(self) -> None:
        first = self.simulate("--sender", "+15550001", "--text", "hello", "--id", "sim-1")
        before = row_counts()

        again = self.simulate("--sender", "+15550001", "--text", "hello", "--id", "sim-1")

        self.assertIs(again["duplicate"], True)
        self.assertEqual((again["event_id"], again["seq"]), (first["event_id"], first["seq"]))
        self.assertEqual(row_counts(), before)

    def test_empty_id_is_no_id(self) -> None:
        self.simulate("--sender", "+15550001", "--text", "one", "--id", "")
        second = self.simulate("--sender", "+15550001", "--text", "two", "--id", "")

        self.assertIs(second["duplicate"], False)
        self.assertEqual(second["seq"], 2)

    def test_unknown_channel_is_a_command_error(self) -> None:
        with self.assertRaisesMessage(CommandError, "unknown_channel"):
            run("simulate_inbound", "--channel", "nope", "--sender", "a", "--text", "hi")
        self.assertFalse(RoomEvent.objects.exists())

    def test_empty_text_is_a_command_error(self) -> None:
        with self.assertRaises(CommandError):
            run("simulate_inbound", "--channel", "sms-demo", "--sender", "a", "--text", "")
        self.assertFalse(RoomEvent.objects.exists())


class SeedDemoTests(TestCase):
    def test_seeds_the_demo_channels(self) -> None:
        run("seed_demo")

        self.assertTrue({"webchat", "api", "demo-http"} <= set(Channel.objects.values_list("id", flat=True)))
        demo = Channel.objects.get(pk="demo-http")
        self.assertEqual((demo.channel_type, demo.provider), ("webhook", "http"))
        self.assertTrue(demo.get_secret("signing_secret"))

    def test_second_run_changes_nothing(self) -> None:
        run("seed_demo")
        snapshot = {c.id: (c.channel_type, c.provider, c.config, c.secrets_encrypted) for c in Channel.objects.all()}

        out = run("seed_demo")

        self.assertEqual(
            {c.id: (c.channel_type, c.provider, c.config, c.secrets_encrypted) for c in Channel.objects.all()}, snapshot
        )
        self.assertNotIn("created", out)

    def test_the_demo_webhook_accepts_messages_signed_with_its_secret(self) -> None:
        run("seed_demo")
        secret = Channel.objects.get(pk="demo-http").get_secret("signing_secret")

        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(self.client, "/webhooks/demo-http/", {"id": "m-1", "sender": "alice", "text": "hi"}, secret)

        self.assertEqual(r.status_code, 200, r.content)

    def test_each_install_generates_its_own_demo_secret(self) -> None:
        run("seed_demo")
        first = Channel.objects.get(pk="demo-http").get_secret("signing_secret")
        Channel.objects.filter(pk="demo-http").delete()

        run("seed_demo")

        self.assertNotEqual(Channel.objects.get(pk="demo-http").get_secret("signing_secret"), first)
