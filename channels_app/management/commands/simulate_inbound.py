import json

from django.core.management.base import BaseCommand, CommandError

from rooms.errors import RoomKitError
from rooms.inbound import InboundMessage, process_inbound


class Command(BaseCommand):
    help = "Push a message through the inbound path, as a provider would."

    def add_arguments(self, parser):
        parser.add_argument("--channel", required=True)
        parser.add_argument("--sender", required=True)
        parser.add_argument("--text", required=True)
        parser.add_argument("--id", default=None, help="provider message id (dedup key)")
        parser.add_argument("--name", default=None, help="sender display name")

    def handle(self, *args, channel, sender, text, id, name, **options):
        try:
            result = process_inbound(
                InboundMessage(
                    channel_id=channel,
                    sender=sender,
                    text=text,
                    provider_message_id=id or None,  # --id "" means no dedup key
                    display_name=name,
                )
            )
        except RoomKitError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(
            json.dumps(
                {
                    "event_id": result.event_id,
                    "room_id": result.room_id,
                    "seq": result.seq,
                    "status": result.status,
                    "duplicate": result.duplicate,
                    "deliveries": result.deliveries,
                }
            )
        )
