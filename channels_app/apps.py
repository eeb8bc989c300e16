from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self) -> None:
        from channels_app import console_actions, dispatch
        from channels_app.webchat.api import router as webchat_api
        from rooms.api.endpoints import api

        dispatch.register()
        console_actions.register()
        # /api/v1/chat/…: the web chat's sessions and uploads, under the API's rules and schema.
        api.add_router("/chat", webchat_api)
