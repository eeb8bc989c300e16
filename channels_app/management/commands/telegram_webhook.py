from django.core.management.base import BaseCommand, CommandError

from channels_app.providers.telegram.webhook_setup import (
    TelegramSetupError,
    describe_webhook_info,
    telegram_webhook_delete,
    telegram_webhook_info,
    telegram_webhook_register,
    webhook_url,
)
from rooms.errors import NotFound
from rooms.selectors import get_channel


class Command(BaseCommand):
    help = (
        "Register a Telegram channel's webhook with Telegram (setWebhook: PUBLIC_BASE_URL + /webhooks/<channel_id>/, "
        "the channel's webhook_secret, the update kinds we read), or show (--info) or remove (--delete) it."
    )

    def add_arguments(self, parser):
        parser.add_argument("channel_id")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--info", action="store_true", help="only show what Telegram holds (getWebhookInfo)")
        group.add_argument("--delete", action="store_true", help="remove the webhook (deleteWebhook)")
        parser.add_argument("--drop-pending", action="store_true", help="with a registration: drop updates waiting at Telegram")

    def handle(self, *args, channel_id, info, delete, drop_pending, **options):
        try:
            channel = get_channel(channel_id)
            if delete:
                telegram_webhook_delete(channel=channel)
                self.stdout.write(f"{channel.id}: webhook deleted")
                answer = telegram_webhook_info(channel=channel)
            elif info:
                answer = telegram_webhook_info(channel=channel)
            else:
                answer = telegram_webhook_register(channel=channel, drop_pending_updates=drop_pending)
                self.stdout.write(f"{channel.id}: webhook set to {webhook_url(channel)}")
        except (TelegramSetupError, NotFound) as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        for line in describe_webhook_info(channel, answer):
            self.stdout.write(line)
