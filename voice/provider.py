"""The ``browser`` provider: voice channels whose calls come from the ``/voice/`` page.

A call hears the room through its socket (``voice.session``), so this
provider takes no webhooks and sends no deliveries: it is registered so that
the admin offers voice channels a provider, with their voice settings.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from channels_app.providers.base import ConfigField, InboundParse, ProviderSpec, SendResult, StatusUpdate
from rooms.enums import ChannelType
from rooms.inbound import InboundResult
from rooms.models import Channel, Delivery

BROWSER_VOICE_SPEC = ProviderSpec(
    label="Browser voice (the /voice/ page)",
    channel_types=frozenset({ChannelType.VOICE}),
    config_fields=(
        ConfigField(
            "voice",
            "Voice settings (JSON)",
            help='e.g. {"stt": {"provider": "whisper"}, "tts": {"provider": "piper"}, "detector": "webrtc", '
            '"interruption": "confirmed", "interrupt_min_speech_ms": 300}; empty: the offline defaults',
        ),
    ),
    webhook="",
    status_callbacks=False,
)


class BrowserVoiceProvider:
    name = "browser"
    spec = BROWSER_VOICE_SPEC

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return False  # no webhooks: calls arrive on /ws/voice/

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        return InboundParse([])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return HttpResponse(status=204)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        return []

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        # Voice channels are push channels (rooms.enums.PUSH_CHANNEL_TYPES): no delivery is ever planned to one.
        return SendResult(ok=False, error="a voice call hears the room through its socket", retryable=False)
