"""The Twilio provider as the admin and ``add_channel`` see it: registered, its spec, a channel made with it."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from django.test import TestCase

from channels_app.providers import get_provider, provider_names
from rooms.models import Channel


class TwilioSpecTests(TestCase):
    def test_registered_for_sms_rcs_and_voice(self) -> None:
        provider = get_provider("twilio")
        self.assertIsNotNone(provider)
        self.assertEqual(provider.spec.channel_types, {"sms", "rcs", "voice"})
        self.assertIn("twilio", provider_names("sms"))
        self.assertIn("twilio", provider_names("rcs"))
        self.assertIn("twilio", provider_names("voice"))
        self.assertEqual((provider.spec.secrets, provider.spec.required_secrets), (("auth_token",), ("auth_token",)))
        self.assertEqual(provider.spec.webhook, "signature")
        self.assertTrue(provider.spec.status_callbacks)

    def test_config_needs_an_account_and_a_number_or_a_service(self) -> None:
        spec = get_provider("twilio").spec

        self.assertEqual(
            [key for key, _ in spec.config_errors({})],
            ["account_sid", "from"],
        )
        self.assertEqual(spec.config_errors({"account_sid": "AC" + "1" * 32, "from": "+15558675310"}), [])
        self.assertEqual(spec.config_errors({"account_sid": "AC" + "1" * 32, "messaging_service_sid": "MG" + "1" * 32}), [])
        # A voice channel sends no messages: no sender needed.
        self.assertEqual(spec.config_errors({"account_sid": "AC" + "1" * 32}, "voice"), [])
        self.assertEqual([key for key, _ in spec.config_errors({"account_sid": "AC" + "1" * 32}, "sms")], ["from"])
        fields = {f.name for f in spec.config_fields}
        self.assertLessEqual({"account_sid", "from", "messaging_service_sid", "fallback", "api_base"}, fields)

    def test_add_channel_stores_the_auth_token_encrypted(self) -> None:
        out = StringIO()
        call_command(
            "add_channel",
            "tw-sms",
            "--type=sms",
            "--provider=twilio",
            '--config={"account_sid": "AC11111111111111111111111111111111", "from": "+15558675310"}',
            "--secret=auth_token=3f5d2c1b0a9e8d7c6b5a4f3e2d1c0b9a",
            stdout=out,
        )

        channel = Channel.objects.get(pk="tw-sms")
        self.assertEqual(channel.get_secret("auth_token"), "3f5d2c1b0a9e8d7c6b5a4f3e2d1c0b9a")
        self.assertNotIn("3f5d2c1b", channel.secrets_encrypted)
        self.assertNotIn("3f5d2c1b", out.getvalue())
