import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from rooms.enums import ChannelCategory, ChannelType
from rooms.models import Channel


class Command(BaseCommand):
    help = "Install the demo channels (safe to run twice)."

    def handle(self, *args, **options):
        webchat, created = Channel.objects.get_or_create(
            pk=settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            defaults={"channel_type": ChannelType.WEBSOCKET, "category": ChannelCategory.TRANSPORT, "name": "Web chat"},
        )
        self.stdout.write(f"channel {webchat.id}: {'created' if created else 'kept'}")
        api, created = Channel.objects.get_or_create(
            pk=settings.ROOMKIT_API_CHANNEL_ID,
            defaults={"channel_type": ChannelType.API, "category": ChannelCategory.TRANSPORT, "name": "REST API"},
        )
        self.stdout.write(f"channel {api.id}: {'created' if created else 'kept'}")
        demo_http = Channel.objects.filter(pk="demo-http").first()
        if demo_http is None:
            demo_http = Channel(
                pk="demo-http",
                channel_type=ChannelType.WEBHOOK,
                provider="http",
                name="Demo HTTP webhook",
                category=ChannelCategory.TRANSPORT,
            )
            demo_http.set_secrets({"signing_secret": secrets.token_urlsafe(24)})
            demo_http.save()
            self.stdout.write(
                "channel demo-http: created (secret 'signing_secret' generated; "
                "set it with manage.py add_channel demo-http --type webhook --provider http "
                "--secret signing_secret=…)"
            )
        else:
            self.stdout.write("channel demo-http: kept")
