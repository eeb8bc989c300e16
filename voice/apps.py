from django.apps import AppConfig


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Voice"

    def ready(self) -> None:
        from channels_app.providers import register_provider
        from rooms.enums import ChannelType
        from rooms.registries import register_channel_type_check
        from voice.config import voice_settings_errors
        from voice.provider import BrowserVoiceProvider

        register_provider("browser", BrowserVoiceProvider)
        # Browser or Twilio, a voice channel's settings are checked when it is saved.
        register_channel_type_check(ChannelType.VOICE, voice_settings_errors)
