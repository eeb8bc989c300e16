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
        self._seed_webchat_page(webchat)
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

        voice, created = Channel.objects.get_or_create(
            pk="voice",
            defaults={
                "channel_type": ChannelType.VOICE,
                "provider": "browser",
                "category": ChannelCategory.TRANSPORT,
                "name": "Browser voice",
                # The offline stack (voice.config defaults: Whisper in, Piper out), confirmed barge-in.
                "config": {"voice": {"interruption": "confirmed"}},
            },
        )
        self.stdout.write(f"channel {voice.id}: {'created' if created else 'kept'} (talk to it at /voice/)")

        self._seed_agents(webchat)
        self._seed_agents_into(voice)

    def _seed_webchat_page(self, webchat: Channel) -> None:
        """The chat page's greeting and reply time (channels_app.webchat.config), unless an operator set their own."""
        page = {
            "welcome_message": "Hi! Ask us about an order, a delivery or a bill. An assistant answers right away, "
            "and a person can join whenever you ask for one.",
            "reply_time": "The assistant replies in seconds; a person usually within a few minutes.",
        }
        missing = {key: value for key, value in page.items() if key not in webchat.config}
        if missing:
            webchat.config = {**webchat.config, **missing}
            webchat.save(update_fields=["config", "updated_at"])
        self.stdout.write(f"channel {webchat.id}: page greeting {'set' if missing else 'kept'}")

    def _seed_agents(self, webchat: Channel) -> None:
        """Triage and specialist agents in a two-stage pipeline, bound into every new web-chat room."""
        import os

        from agents.models import Agent, Pipeline, PipelineStage
        from agents.services import agent_save

        provider = "openai" if os.environ.get("OPENAI_API_KEY") else "scripted"
        model = os.environ.get("ROOMKIT_DEMO_MODEL", "gpt-4o-mini") if provider == "openai" else ""
        specs = {
            "triage": dict(
                name="Triage",
                role="Triage receptionist",
                description="Greets visitors and finds out what they need.",
                system_prompt="You are the first contact of a small online shop. Find out what the visitor needs in one or "
                "two short questions, then hand the conversation to the specialist for orders, billing or technical "
                "problems, or to a human when the visitor asks for a person.",
                greeting="Greet the visitor warmly and ask how you can help.",
            ),
            "specialist": dict(
                name="Specialist",
                role="Support specialist",
                description="Answers questions about orders, deliveries, billing and technical problems.",
                system_prompt="You are the shop's support specialist. Use your tools to look up orders. Be concise.",
                greeting="Introduce yourself as the support specialist and say you have read the conversation so far.",
                tools=["lookup_order", "get_current_time"],
                skills=["order_support"],
                voice="espeak:en-gb",  # on a call, the caller hears the handoff: another voice takes over
            ),
        }
        for agent_id, fields in specs.items():
            agent = Agent.objects.filter(pk=agent_id).first()
            if agent is None:
                agent_save(Agent(id=agent_id, provider=provider, model=model, **fields))
                self.stdout.write(f"agent {agent_id}: created ({provider})")
            else:
                self.stdout.write(f"agent {agent_id}: kept ({agent.provider})")
        pipeline, created = Pipeline.objects.get_or_create(
            pk="support", defaults={"name": "Support: triage → specialist", "allow_human_handoff": True}
        )
        if created:
            PipelineStage.objects.create(pipeline=pipeline, order=0, phase="triage", agent_id="triage", next_phase="handling")
            PipelineStage.objects.create(
                pipeline=pipeline, order=1, phase="handling", agent_id="specialist", can_handoff_to=["triage"]
            )
        self.stdout.write(f"pipeline support: {'created' if created else 'kept'}")
        self._seed_agents_into(webchat)

    def _seed_agents_into(self, channel: Channel) -> None:
        attach = list(channel.config.get("attach_on_create", []))
        missing = [a for a in ("triage", "specialist") if a not in attach]
        if missing:
            channel.config = {**channel.config, "attach_on_create": attach + missing}
            channel.save(update_fields=["config", "updated_at"])
        self.stdout.write(f"channel {channel.id}: agents {', '.join(attach + missing)} join every new room")
