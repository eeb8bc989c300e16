import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from channels_app.services_channels import channel_rotate_webhook_token, channel_upsert, channel_webhook_urls
from channels_app.webhook_tokens import TOKEN_PARAM
from rooms.errors import RoomKitError


class Command(BaseCommand):
    help = (
        "Create or update a channel; secrets are stored encrypted. The channel is checked as the admin checks it: "
        "the provider serves the type, its required config keys and secrets are set, the delivery policy is valid."
    )

    def add_arguments(self, parser):
        parser.add_argument("channel_id")
        parser.add_argument("--type", required=True, dest="channel_type")
        parser.add_argument("--provider", default=None, help="adapter name (kept on update when omitted)")
        parser.add_argument("--config", default=None, help="JSON object (replaces the current config)")
        parser.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--name", default=None)
        parser.add_argument("--category", default=None, choices=["transport", "intelligence"])
        parser.add_argument(
            "--rotate-webhook-token",
            action="store_true",
            help="for a provider whose webhook URL carries a token: make a new one (the old URL stops working)",
        )
        parser.add_argument(
            "--show-webhook-token",
            action="store_true",
            help="print the webhook URLs with their token (hidden by default: output ends up in logs)",
        )

    def handle(
        self,
        *args,
        channel_id,
        channel_type,
        provider,
        config,
        secret,
        name,
        category,
        rotate_webhook_token,
        show_webhook_token,
        **options,
    ):
        try:
            parsed_config = json.loads(config) if config is not None else None
        except ValueError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}") from None
        secrets = {}
        for item in secret:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--secret expects NAME=VALUE, got {key!r}")
            secrets[key] = value
        try:
            # One transaction: a refused rotation leaves the channel as it was.
            with transaction.atomic():
                channel, created = channel_upsert(
                    channel_id=channel_id,
                    channel_type=channel_type,
                    provider=provider,
                    config=parsed_config,
                    secrets=secrets,
                    name=name,
                    category=category,
                )
                if rotate_webhook_token:
                    channel = channel_rotate_webhook_token(channel_id=channel.id)
        except RoomKitError as exc:
            raise CommandError(exc.message) from None
        verb = "created" if created else "updated"
        names = ", ".join(channel.secret_names) or "none"
        self.stdout.write(f"channel {channel.id} {verb} ({channel.channel_type}/{channel.provider or '-'}; secrets: {names})")
        urls = channel_webhook_urls(channel)
        for label, url in (("inbound webhook", urls.inbound), ("status webhook", urls.status)):
            if url and urls.token_in_url and not show_webhook_token:
                url = url.partition("?")[0] + f"?{TOKEN_PARAM}=<hidden: add --show-webhook-token>"
            if url:
                self.stdout.write(f"{label}: {url}")
        if urls.token_in_url:
            # The operator pastes these at the vendor: say plainly what they are.
            self.stdout.write(
                "this vendor does not sign its webhooks: the token in these URLs is the only check, "
                "so the URLs are secrets (rotate with --rotate-webhook-token if they leak)"
            )
