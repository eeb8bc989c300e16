"""The Twilio transport (provider ``twilio``): SMS/MMS and RCS through Programmable Messaging, and phone calls.

Inbound: ``POST /webhooks/<channel_id>/``, Twilio's form, signed
``X-Twilio-Signature`` (``webhooks.verify_twilio_signature``), answered with
empty TwiML. Status callbacks: ``POST /webhooks/<channel_id>/status/``, signed
alike. Outbound: the Messages API through the ``twilio`` SDK
(``sending.send_delivery``), RCS rich content through Content Templates
(``rich``).

A ``voice`` channel's webhook is a call ringing: it is answered with TwiML
that connects the call to our Media Streams socket (``calls.stream_twiml``);
nothing is stored here, the socket (``voice.twilio_consumer``) carries the call.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from twilio.twiml.messaging_response import MessagingResponse

from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    configuration_failure,
)
from channels_app.providers.twilio.calls import parse_call, stream_twiml
from channels_app.providers.twilio.config import TwilioConfigError, twilio_config
from channels_app.providers.twilio.sending import send_delivery
from channels_app.providers.twilio.webhooks import parse_message, parse_status_callback, verify_twilio_signature
from rooms.enums import ChannelType
from rooms.inbound import InboundResult
from rooms.models import Channel, Delivery

# Twilio reads our answer as TwiML; an empty <Response/> sends no reply of its own.
EMPTY_TWIML = str(MessagingResponse()).encode()

TWILIO_SPEC = ProviderSpec(
    label="Twilio (SMS/MMS, RCS, voice calls)",
    channel_types=frozenset({ChannelType.SMS, ChannelType.RCS, ChannelType.VOICE}),
    config_fields=(
        ConfigField("account_sid", "Account SID", required=True, help="AC…, the account whose auth token signs the webhooks"),
        ConfigField(
            "from",
            "From",
            help="The channel's number (E.164), short code or alphanumeric id; for RCS without a service, rcs:<sender id>; "
            "optional for voice",
        ),
        ConfigField(
            "messaging_service_sid",
            "Messaging Service SID",
            help="MG…: send through the service's sender pool (required for RCS with SMS fallback)",
        ),
        ConfigField("fallback", "SMS fallback (RCS)", help="RCS only: let Twilio fall back to SMS/MMS; default true"),
        ConfigField(
            "fallback_from", "Fallback sender (RCS)", help="RCS only: the SMS sender Twilio falls back to (FallbackFrom)"
        ),
        ConfigField("api_base", "API base URL", help="Default https://api.twilio.com"),
        ConfigField("content_api_base", "Content API base URL", help="Default: beside api_base (https://content.twilio.com)"),
        ConfigField("timeout_seconds", "Timeout (seconds)", help="Per call to Twilio; default 10"),
    ),
    secrets=("auth_token",),
    required_secrets=("auth_token",),
    webhook="signature",
    status_callbacks=True,
    one_of=(("from", "messaging_service_sid"),),
    # A voice channel sends no messages: its calls' sockets carry what it says.
    one_of_types=frozenset({ChannelType.SMS, ChannelType.RCS}),
)


def _empty_twiml() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml; charset=utf-8")


class TwilioProvider:
    """Twilio Programmable Messaging for ``sms`` and ``rcs`` channels; Programmable Voice calls for ``voice`` ones."""

    name = "twilio"
    spec = TWILIO_SPEC

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        try:
            token = twilio_config(channel).auth_token
        except TwilioConfigError:
            return False
        return verify_twilio_signature(request, token)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        if channel.channel_type == ChannelType.VOICE:
            # A call ringing: the answer connects it to our socket, which stores what the call brings.
            return InboundParse([], response=stream_twiml(channel, parse_call(channel, request.POST)))
        message = parse_message(channel, request.POST)
        if message is None:
            # Nothing to keep, still acknowledged the way Twilio reads an answer.
            return InboundParse([], response=_empty_twiml())
        return InboundParse([message])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        # Stored, duplicate or blocked alike: Twilio retries nothing we acknowledge, and wants TwiML.
        return _empty_twiml()

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate] | InboundParse:
        if channel.channel_type == ChannelType.VOICE:
            # Call progress (ringing, completed…): no delivery of ours to update; the socket records the call's end.
            return InboundParse([], response=_empty_twiml())
        return parse_status_callback(channel, request.POST)

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        if channel.channel_type == ChannelType.VOICE:
            return configuration_failure("a Twilio voice channel speaks on its calls; it sends no messages", error_code="voice")
        return send_delivery(channel, delivery)
