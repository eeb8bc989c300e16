import json

from django.core.management.base import BaseCommand, CommandError

from channels_app.services_channels import channel_upsert
from rooms.errors import RoomKitError


class Command(BaseCommand):
    help = "Create or update a channel; secrets are stored encrypted."

    def add_arguments(self, parser):
        parser.add_argument("channel_id")
        parser.add_argument("--type", required=True, dest="channel_type")
        parser.add_argument("--provider", default=None, help="adapter name (kept on update when omitted)")
        parser.add_argument("--config", default=None, help="JSON object (replaces the current config)")
        parser.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--name", default=None)
        parser.add_argument("--category", default=None, choices=["transport", "intelligence"])

    def handle(self, *args, channel_id, channel_type, provider, config, secret, name, category, **options):
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
            channel, created = channel_upsert(
                channel_id=channel_id,
                channel_type=channel_type,
                provider=provider,
                config=parsed_config,
                secrets=secrets,
                name=name,
                category=category,
            )
        except RoomKitError as exc:
            raise CommandError(exc.message) from None
        verb = "created" if created else "updated"
        names = ", ".join(channel.secret_names) or "none"
        self.stdout.write(f"channel {channel.id} {verb} ({channel.channel_type}/{channel.provider or '-'}; secrets: {names})")
