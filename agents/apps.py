from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "AI agents"

    def ready(self) -> None:
        from agents import console_actions, intelligence, selectors, tools  # noqa: F401  (built-in tools, cache signals)
        from rooms import registries
        from rooms.enums import ChannelType

        registries.register_intelligence_handler(ChannelType.AI, intelligence.on_room_event)
        console_actions.register()
