"""The WhatsApp Business adapter over Meta's Cloud API (provider ``whatsapp_cloud``).

Inbound: ``GET /webhooks/<channel_id>/`` is Meta's subscription handshake;
every POST (messages and statuses alike, on the one URL Meta calls) is
verified by ``X-Hub-Signature-256`` with the app secret and read by
``inbound.py``. Meta retries anything but a 200, so what we do not act on is
acknowledged.

Outbound: ``POST {api_base}/{api_version}/{phone_number_id}/messages`` with the
access token (``outbound.py`` builds the message). A free-form message goes
only within 24 hours of the customer's last message (``meta.window``);
outside it only a template goes, and anything else fails at once with an
Observation on the room. Meta has no idempotency key for sends.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.http import HttpRequest, JsonResponse

from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    configuration_failure,
)
from channels_app.providers.meta import graph, webhooks, window
from channels_app.providers.meta.base import GRAPH_CONFIG_FIELDS, MetaWebhookProvider
from channels_app.providers.meta.whatsapp import inbound, outbound
from rooms.enums import ChannelType, DeliveryStatus
from rooms.inbound import InboundMessage
from rooms.models import Channel, Delivery, RoomEvent

logger = logging.getLogger(__name__)

WEBHOOK_OBJECT = "whatsapp_business_account"
# Cloud API error codes that say "never, for this message or recipient" (Cloud API "Error codes"):
# the window closed (131047, and 470 of the on-premises API), undeliverable (131026), a type or
# media that cannot go (131051, 131052, 131053), bad parameters (100, 131008, 131009), template
# errors (132000-132016), the recipient is the sender (131021), a number not registered (133010),
# a payment or eligibility problem (131042), a certificate problem (131045).
PERMANENT_CODES = frozenset(
    {
        "131047", "470", "131026", "131051", "131052", "131053", "100", "131008", "131009",
        "132000", "132001", "132005", "132007", "132012", "132015", "132016", "131021", "133010", "131042", "131045",
    }
)  # fmt: skip


class WhatsAppCloudProvider(MetaWebhookProvider):
    """WhatsApp Business through Meta's Cloud API."""

    name = "whatsapp_cloud"
    spec = ProviderSpec(
        label="WhatsApp Business (Meta Cloud API)",
        channel_types=frozenset({ChannelType.WHATSAPP}),
        config_fields=(
            ConfigField(
                "phone_number_id",
                "Phone number id",
                required=True,
                help="The WhatsApp business number's id (WhatsApp Manager → API setup)",
            ),
            ConfigField(
                "waba_id", "WhatsApp Business Account id", help="Optional: lists the account's message templates in the admin"
            ),
            *GRAPH_CONFIG_FIELDS,
        ),
        secrets=("access_token", "app_secret", "verify_token"),
        required_secrets=("access_token", "app_secret", "verify_token"),
        webhook="signature",
        # Statuses come on the inbound URL (Meta has one callback URL per app).
        status_callbacks=False,
    )

    # --- webhooks -------------------------------------------------------------------------

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        """Every ``messages`` change for this channel's number: customers' messages and our messages' statuses."""
        raw_entries = webhooks.envelope_entries(request, WEBHOOK_OBJECT)
        raw = {"object": WEBHOOK_OBJECT, "entry": raw_entries}
        messages: list[InboundMessage] = []
        updates: list[StatusUpdate] = []
        ours = str(channel.config.get("phone_number_id") or "")
        for entry in raw_entries:
            changes = entry.get("changes")
            if not isinstance(changes, list):
                continue
            for change in changes:
                if not isinstance(change, dict) or change.get("field") != "messages" or not isinstance(change.get("value"), dict):
                    continue
                value = change["value"]
                meta = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
                if ours and str(meta.get("phone_number_id") or "") != ours:
                    # Another number of the same app: not this channel's to store.
                    continue
                found, statuses = inbound.read_change(channel, value, raw)
                messages.extend(found)
                updates.extend(statuses)
        response = None if messages or updates else JsonResponse({"ignored": True})
        return InboundParse(messages, response=response, status_updates=updates)

    # --- sending --------------------------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery; a free-form one outside the 24-hour window is refused (templates go)."""
        token = channel.get_secret("access_token")
        if not token:
            return configuration_failure("channel has no 'access_token' secret")
        phone_number_id = str(channel.config.get("phone_number_id") or "")
        if not phone_number_id:
            return configuration_failure("channel has no 'phone_number_id'")
        if not delivery.recipient:
            return SendResult(False, error="delivery has no recipient", retryable=False, counts_against_breaker=False)
        content = delivery.content or {}
        if content.get("type") != "template" and not window.window_open(delivery):
            return window.refuse_outside_window(
                delivery, platform="WhatsApp", remedy="only an approved template can be sent until the customer writes again"
            )
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": outbound.recipient_number(delivery.recipient),
            **outbound.message_object(content),
        }
        answer = graph.graph_post(channel, f"{phone_number_id}/messages", token=token, body=body)
        if isinstance(answer, SendResult):
            return answer
        if not 200 <= answer.status_code < 300:
            return graph.failure_for_graph_response(answer, permanent_codes=PERMANENT_CODES)
        return _accepted(channel, answer)

    def show_activity(self, channel: Channel, recipient: str, kind: str, room_id: str) -> bool:
        """The team read (blue ticks) or is typing (WhatsApp's typing indicator, which also marks read).

        Both are said of the customer's latest message in the room (WhatsApp
        marks the earlier ones read with it); nothing to say before they wrote.
        """
        if kind not in ("read", "typing_start"):
            return False  # the indicator ends by itself (25 s) or with our reply
        token = channel.get_secret("access_token")
        phone_number_id = str(channel.config.get("phone_number_id") or "")
        last = (
            RoomEvent.objects.filter(room_id=room_id, source_channel=channel, provider_message_id__isnull=False)
            .order_by("-seq")
            .values_list("provider_message_id", flat=True)
            .first()
        )
        if not (token and phone_number_id and last):
            return False
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": last}
        if kind == "typing_start":
            body["typing_indicator"] = {"type": "text"}
        answer = graph.graph_post(channel, f"{phone_number_id}/messages", token=token, body=body)
        return not isinstance(answer, SendResult) and 200 <= answer.status_code < 300


def _accepted(channel: Channel, response: httpx.Response) -> SendResult:
    """Meta took it: the ``wamid`` its statuses will name (``messages[0].id``)."""
    reply = graph.json_or_none(response)
    found = reply.get("messages") if isinstance(reply, dict) else None
    first = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}
    wamid = first.get("id")
    if not isinstance(wamid, str) or not wamid:
        logger.warning("whatsapp %s: a %s answer without messages[0].id", channel.id, response.status_code)
        return SendResult(True, status=DeliveryStatus.QUEUED)
    # Accepted by Meta; its "sent" status says when it left for the phone.
    return SendResult(True, provider_message_id=wamid, status=DeliveryStatus.QUEUED)
