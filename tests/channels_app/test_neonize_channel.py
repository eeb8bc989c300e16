"""The ``neonize`` provider as a channel: registered for ``whatsapp_personal``, no webhooks, its supervisor command."""

from __future__ import annotations

from io import StringIO

from django.core.management import CommandError, call_command
from django.test import TestCase

from channels_app.providers import get_provider, provider_names
from rooms.models import Channel, RoomEvent
from tests.channels_app.helpers import row_counts
from tests.support import make_channel


class NeonizeChannelTests(TestCase):
    def test_it_is_the_provider_of_whatsapp_personal_with_no_webhook_and_no_typed_secret(self) -> None:
        self.assertIn("neonize", provider_names("whatsapp_personal"))
        spec = get_provider("neonize").spec
        self.assertEqual((spec.webhook, spec.status_callbacks, spec.secrets), ("", False, ()))
        self.assertEqual([f.name for f in spec.config_fields], ["proxy"])

    def test_a_post_to_its_webhook_url_is_refused_and_stores_nothing(self) -> None:
        make_channel("wa-personal", channel_type="whatsapp_personal", provider="neonize")
        before = row_counts()
        response = self.client.post("/webhooks/wa-personal/", b'{"Info": {"ID": "x"}}', content_type="application/json")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(row_counts(), before)
        self.assertFalse(RoomEvent.objects.exists())

    def test_the_supervisor_command_refuses_channels_it_cannot_run(self) -> None:
        make_channel("sms-1", channel_type="sms", provider="http")
        make_channel("wa-off", channel_type="whatsapp_personal", provider="neonize", enabled=False)
        with self.assertRaisesMessage(CommandError, "no enabled neonize whatsapp_personal channel to run"):
            call_command("run_whatsapp_personal", stdout=StringIO())
        with self.assertRaisesMessage(CommandError, "no enabled neonize whatsapp_personal channel: sms-1, wa-off"):
            call_command("run_whatsapp_personal", "sms-1", "wa-off", stdout=StringIO())

    def test_add_channel_makes_one_with_no_secret(self) -> None:
        call_command("add_channel", "wa-shop", "--type", "whatsapp_personal", "--provider", "neonize", stdout=StringIO())
        channel = Channel.objects.get(pk="wa-shop")
        self.assertEqual((channel.channel_type, channel.provider, channel.secret_names), ("whatsapp_personal", "neonize", []))
