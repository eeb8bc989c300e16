"""Registering the webhook with Telegram: ``manage.py telegram_webhook`` and the channel admin's actions.

Against the fake Bot API: setWebhook gets our URL, the channel's secret and
the update kinds we read; getWebhookInfo is shown; the token never is.
"""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse

from rooms.models import AuditEntry
from tests.channels_app.test_telegram_support import WEBHOOK_SECRET, TelegramTestCase
from tests.support import make_channel

PUBLIC = "https://roomkit.example.test"


def run(*args: str) -> str:
    out = StringIO()
    call_command("telegram_webhook", *args, stdout=out)
    return out.getvalue()


@override_settings(PUBLIC_BASE_URL=PUBLIC)
class TelegramWebhookSetupTests(TelegramTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telegram_channel()

    def test_the_command_registers_the_webhook_and_shows_what_telegram_holds(self) -> None:
        out = run("tg")
        self.assertEqual(
            self.telegram.calls("setWebhook"),
            [
                {
                    "url": f"{PUBLIC}/webhooks/tg/",
                    "secret_token": WEBHOOK_SECRET,
                    "allowed_updates": ["message", "edited_message", "callback_query"],
                    "drop_pending_updates": False,
                }
            ],
        )
        self.assertIn(f"URL: {PUBLIC}/webhooks/tg/ (this channel)", out)
        self.assertIn("pending updates: 2", out)
        self.assertIn("allowed updates: message, edited_message, callback_query", out)
        self.assertIn("last error: Wrong response from the webhook: 503 Service Unavailable", out)
        self.assertNotIn(self.telegram.token, out)
        self.assertNotIn(WEBHOOK_SECRET, out)

    def test_info_only_reads_and_delete_removes(self) -> None:
        out = run("tg", "--info")
        self.assertIn("URL: (none: no webhook set)", out)
        self.assertEqual(self.telegram.calls("setWebhook"), [])
        run("tg")
        out = run("tg", "--delete")
        self.assertIn("webhook deleted", out)
        self.assertEqual(len(self.telegram.calls("deleteWebhook")), 1)
        self.assertEqual(self.telegram.webhook, {})

    def test_refusals_are_command_errors(self) -> None:
        make_channel("sms-1", channel_type="sms", provider="http")
        self.make_telegram_channel("tg-nosecret", secrets={"bot_token": self.telegram.token})
        self.make_telegram_channel("tg-badtoken", secrets={"bot_token": "1:nope", "webhook_secret": "abc"})
        for args, words in (
            (("nope",), "unknown"),
            (("sms-1",), "not a Telegram channel"),
            (("tg-nosecret",), "no 'webhook_secret'"),
            (("tg-badtoken",), "setWebhook: Telegram 401: Unauthorized"),
        ):
            with self.subTest(args=args), self.assertRaises(CommandError) as caught:
                run(*args)
            self.assertIn(words, str(caught.exception))
            self.assertNotIn("1:nope", str(caught.exception))

    @override_settings(PUBLIC_BASE_URL="http://127.0.0.1:8000")
    def test_telegram_refusing_a_plain_http_url_is_said(self) -> None:
        with self.assertRaises(CommandError) as caught:
            run("tg")
        self.assertIn("An HTTPS URL must be provided", str(caught.exception))

    def test_the_admin_action_registers_and_shows_the_info_and_is_audited(self) -> None:
        admin = get_user_model().objects.create_superuser("root", "root@example.test", "pw")
        self.client.force_login(admin)
        make_channel("sms-1", channel_type="sms", provider="http")
        changelist = reverse("admin:rooms_channel_changelist")
        page = self.client.get(changelist)
        self.assertContains(page, "Telegram: register the webhook with Telegram")
        response = self.client.post(changelist, {"action": "telegram_register_webhook", "_selected_action": ["tg", "sms-1"]})
        self.assertEqual(response.status_code, 302)
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        self.assertTrue(
            any(m.startswith("tg: webhook registered with Telegram.") and "(this channel)" in m for m in shown), shown
        )
        self.assertIn("sms-1: channel 'sms-1' is not a Telegram channel", shown)
        self.assertEqual(self.telegram.webhook["url"], f"{PUBLIC}/webhooks/tg/")
        self.assertTrue(AuditEntry.objects.filter(action="telegram_register_webhook", target="channel:tg").exists())
        response = self.client.post(changelist, {"action": "telegram_webhook_info", "_selected_action": ["tg"]}, follow=True)
        self.assertContains(response, "pending updates: 2")
        self.assertNotContains(response, self.telegram.token)

    def test_staff_who_are_not_superusers_do_not_get_the_action(self) -> None:
        staff = get_user_model().objects.create_user("op", "op@example.test", "pw", is_staff=True)
        from django.contrib.auth.models import Permission

        staff.user_permissions.add(Permission.objects.get(codename="view_channel"))
        self.client.force_login(staff)
        page = self.client.get(reverse("admin:rooms_channel_changelist"))
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, "telegram_register_webhook")
