"""A voice channel's settings as read from its config: defaults, bounds, and what depends on the engines."""

from __future__ import annotations

from django.test import SimpleTestCase, tag

from voice.config import VoiceSettings, voice_settings, voice_settings_errors


@tag("no_db")
class VoiceSettingsTests(SimpleTestCase):
    def test_no_settings_are_the_offline_defaults(self) -> None:
        self.assertEqual(voice_settings({}), VoiceSettings())
        self.assertEqual(voice_settings_errors({}), [])

    def test_partials_are_on_for_offline_engines_and_off_for_paid_ones(self) -> None:
        self.assertEqual(voice_settings({"voice": {"stt": {"provider": "pocketsphinx"}}}).partial_interval_ms, 1000)
        self.assertEqual(voice_settings({"voice": {"stt": {"provider": "deepgram"}}}).partial_interval_ms, 0)
        on = voice_settings({"voice": {"stt": {"provider": "openai"}, "partial_interval_ms": 2000}})
        self.assertEqual(on.partial_interval_ms, 2000)  # asked for: paid for

    def test_saved_values_out_of_bounds_are_clamped_and_junk_is_the_default(self) -> None:
        settings = voice_settings({"voice": '{"probable_end_ms": 5, "detector": "nope", "end_silence_ms": "x"}'})
        self.assertEqual((settings.probable_end_ms, settings.detector, settings.end_silence_ms), (60, "webrtc", 600))
        self.assertEqual(voice_settings({"voice": "{not json"}), VoiceSettings())
