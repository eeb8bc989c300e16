from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self) -> None:
        from channels_app import console_actions, dispatch
        from channels_app.webchat.api import router as webchat_api
        from channels_app.webchat.config import webchat_settings_errors
        from rooms.api.endpoints import api
        from rooms.enums import ChannelType
        from rooms.registries import register_channel_type_check

        dispatch.register()
        console_actions.register()
        # Operators' attachments from the inbox are stored and served as the visitors' are.
        from channels_app.webchat.media import store_image
        from rooms.registries import register_media_store

        register_media_store(lambda upload: store_image(upload).as_content_fields())
        # manage.py serve keeps the WhatsApp Personal clients running beside the server.
        from channels_app.management.commands.run_whatsapp_personal import serve_whatsapp_personal
        from rooms.registries import register_serve_starter

        register_serve_starter("WhatsApp Personal", serve_whatsapp_personal)
        # A web chat's page settings (welcome message, reply time) are checked when it is saved.
        register_channel_type_check(ChannelType.WEBSOCKET, webchat_settings_errors)
        # /api/v1/chat/…: the web chat's sessions and uploads, under the API's rules and schema.
        api.add_router("/chat", webchat_api)
