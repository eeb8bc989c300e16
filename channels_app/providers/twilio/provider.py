"""The Twilio transport (provider ``twilio``): SMS/MMS and RCS through Programmable Messaging.

Inbound: ``POST /webhooks/<channel_id>/``, Twilio's form, signed
``X-Twilio-Signature`` (``webhooks.verify_twilio_signature``), answered with
empty TwiML. Status callbacks: ``POST /webhooks/<channel_id>/status/``, signed
alike. Outbound: the Messages API through the ``twilio`` SDK
(``sending.send_delivery``), RCS rich content through Content Templates
(``rich``).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from twilio.twiml.messaging_response import MessagingResponse

from channels_app.providers.base import ConfigField, InboundParse, ProviderSpec, SendResult, StatusUpdate
from channels_app.providers.twilio.config import TwilioConfigError, twilio_config
from channels_app.providers.twilio.sending import send_delivery
from channels_app.providers.twilio.webhooks import parse_message, parse_status_callback, verify_twilio_signature
from rooms.enums import ChannelType
from rooms.inbound import InboundResult
from rooms.models import Channel, Delivery

# Twilio reads our answer as TwiML; an empty <Response/> sends no reply of its own.
EMPTY_TWIML = str(MessagingResponse()).encode()

TWILIO_SPEC = ProviderSpec(
    label="Twilio (SMS/MMS, RCS)",
    channel_types=frozenset({ChannelType.SMS, ChannelType.RCS}),
    config_fields=(
        ConfigField("account_sid", "Account SID", required=True, help="AC…, the account whose auth token signs the webhooks"),
        ConfigField(
            "from",
            "From",
            help="The channel's number (E.164), short code or alphanumeric id; for RCS without a service, rcs:<sender id>",
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
)


def _empty_twiml() -> HttpResponse:
    return HttpResponse(EMPTY_TWIML, content_type="text/xml; charset=utf-8")


class TwilioProvider:
    """Twilio Programmable Messaging for ``sms`` and ``rcs`` channels."""

    name = "twilio"
    spec = TWILIO_SPEC

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        try:
            token = twilio_config(channel).auth_token
        except TwilioConfigError:
            return False
        return verify_twilio_signature(request, token)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        message = parse_message(channel, request.POST)
        if message is None:
            # Nothing to keep, still acknowledged the way Twilio reads an answer.
            return InboundParse([], response=_empty_twiml())
        return InboundParse([message])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        # Stored, duplicate or blocked alike: Twilio retries nothing we acknowledge, and wants TwiML.
        return _empty_twiml()

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        return parse_status_callback(channel, request.POST)

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        return send_delivery(channel, delivery)
