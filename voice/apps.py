from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Voice"

    def ready(self) -> None:
        from channels_app.providers import register_provider
        from voice.provider import BrowserVoiceProvider

        register_provider("browser", BrowserVoiceProvider)
