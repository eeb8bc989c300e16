"""The WhatsApp Personal adapter (provider ``neonize``, channel type ``whatsapp_personal``).

No webhooks: WhatsApp talks to one linked-device client per account, which
``manage.py run_whatsapp_personal`` keeps connected (``supervisor``); what it
receives goes through ``process_inbound`` there. ``send`` hands a delivery to
that client (``outbox``). The session, the one secret, is the linked device's
keys, stored encrypted by the supervisor (``sessions``), never typed in.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    delivery_idempotency_key,
)
from channels_app.providers.neonize import outbox
from rooms.enums import ChannelType
from rooms.errors import InvalidInput
from rooms.inbound import InboundResult
from rooms.models import Channel, Delivery


class NeonizeWhatsAppProvider:
    """WhatsApp Personal through neonize's long-lived client."""

    name = "neonize"
    spec = ProviderSpec(
        label="WhatsApp Personal (neonize, QR-linked device)",
        channel_types=frozenset({ChannelType.WHATSAPP_PERSONAL}),
        config_fields=(
            ConfigField(
                "proxy",
                "Proxy URL",
                help="Optional socks5:// or http:// proxy the client connects through (neonize's ProxySettings)",
            ),
        ),
        secrets=(),
        webhook="",
        status_callbacks=False,
    )

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return False  # nothing comes by webhook: the view answers 403 and stores nothing

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        raise InvalidInput("WhatsApp Personal channels take no webhooks", code="no_webhook")

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return HttpResponse(status=204)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        raise InvalidInput("WhatsApp Personal channels take no webhooks", code="no_webhook")

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        if not delivery.recipient:
            return SendResult(False, error="delivery has no recipient", retryable=False, counts_against_breaker=False)
        answer = outbox.request_send(
            channel.id,
            {"key": delivery_idempotency_key(delivery), "recipient": delivery.recipient, "content": delivery.content},
        )
        if answer.get("ok"):
            return SendResult(True, provider_message_id=str(answer.get("provider_message_id") or ""))
        retryable = bool(answer.get("retryable", True))
        return SendResult(
            False,
            error=str(answer.get("error") or "send failed")[:2000],
            retryable=retryable,
            # A bad address or empty content says nothing of the client's health.
            counts_against_breaker=None if retryable else False,
            error_code=str(answer.get("error_code") or ""),
        )
