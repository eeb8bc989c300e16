"""The Messenger adapter (provider ``messenger``): a Facebook Page's conversations over the Send API.

Inbound: ``GET`` is Meta's subscription handshake; every POST is verified by
``X-Hub-Signature-256`` with the app secret and read by ``inbound.py``
(messages, postbacks, delivery and read watermarks all come to the one URL).

Outbound: ``POST {api_base}/{api_version}/me/messages`` with the page access
token. Within 24 hours of the customer's last message a send is a
``RESPONSE``; outside it, only a message with a message tag goes
(``MESSAGE_TAG``: the content's ``metadata.message_tag``, a template whose
name is a tag, or the channel's ``message_tag``), anything else fails at once
with an Observation on the room (``meta.window``). ``send_sender_action``
shows typing or marks the customer's messages seen.
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
from channels_app.providers.meta.messenger import inbound, outbound
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel, Delivery

logger = logging.getLogger(__name__)

WEBHOOK_OBJECT = "page"
# The tags Messenger still accepts for messages outside the window (Send API "Message tags").
MESSAGE_TAGS = frozenset({"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"})
SENDER_ACTIONS = frozenset({"typing_on", "typing_off", "mark_seen"})
# Send API codes that say "never, for this message or person": the window (10 with subcode
# 2018278), a person not available (551), no matching user (100 with 2018001), blocked (1545041).
PERMANENT_CODES = frozenset({"551", "100", "1545041", "2018278", "2018001"})


class MessengerProvider(MetaWebhookProvider):
    """Messenger for a Facebook Page."""

    name = "messenger"
    spec = ProviderSpec(
        label="Messenger (Meta, a Facebook Page)",
        channel_types=frozenset({ChannelType.MESSENGER}),
        config_fields=(
            ConfigField("page_id", "Page id", required=True, help="The Facebook Page whose conversations this channel holds"),
            ConfigField(
                "message_tag", "Default message tag", help="Optional: the tag for sends outside 24 hours, e.g. ACCOUNT_UPDATE"
            ),
            *GRAPH_CONFIG_FIELDS,
        ),
        secrets=("page_access_token", "app_secret", "verify_token"),
        required_secrets=("page_access_token", "app_secret", "verify_token"),
        webhook="signature",
        status_callbacks=False,
    )

    # --- webhooks -------------------------------------------------------------------------

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        entries = webhooks.envelope_entries(request, WEBHOOK_OBJECT)
        raw = {"object": WEBHOOK_OBJECT, "entry": entries}
        page_id = str(channel.config.get("page_id") or "")
        messages: list[InboundMessage] = []
        updates: list[StatusUpdate] = []
        for entry in entries:
            if page_id and str(entry.get("id") or "") != page_id:
                continue  # another page of the same app
            events = entry.get("messaging", [])
            if not isinstance(events, list):
                raise InvalidInput("'entry[].messaging' must be a list", code="invalid_field")
            for event in events:
                message, found = inbound.read_event(channel, event, raw)
                if message is not None:
                    messages.append(message)
                updates.extend(found)
        response = None if messages or updates else JsonResponse({"ignored": True})
        return InboundParse(messages, response=response, status_updates=updates)

    # --- sending --------------------------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery: a response within the window, a tagged message outside it, else refused."""
        token = channel.get_secret("page_access_token")
        if not token:
            return configuration_failure("channel has no 'page_access_token' secret")
        if not delivery.recipient:
            return SendResult(False, error="delivery has no recipient", retryable=False, counts_against_breaker=False)
        content = delivery.content or {}
        routing: dict[str, Any] = {"messaging_type": "RESPONSE"}
        if not window.window_open(delivery):
            tag = message_tag(channel, content)
            if not tag:
                return window.refuse_outside_window(
                    delivery, platform="Messenger", remedy="only a message with a message tag can be sent (set one)"
                )
            routing = {"messaging_type": "MESSAGE_TAG", "tag": tag}
        first = ""
        for message in outbound.messages_for(content):
            body = {"recipient": {"id": delivery.recipient}, **routing, "message": message}
            answer = graph.graph_post(channel, "me/messages", token=token, body=body)
            if isinstance(answer, SendResult):
                return answer
            if not 200 <= answer.status_code < 300:
                if first:
                    # The file went; only its caption did not. Sending the file again would repeat it.
                    logger.warning(
                        "messenger %s: delivery %s caption not sent: HTTP %s", channel.id, delivery.pk, answer.status_code
                    )
                    break
                return _failure(answer)
            first = first or _message_id(channel, answer)
        return SendResult(True, provider_message_id=first, status=DeliveryStatus.SENT)

    def show_activity(self, channel: Channel, recipient: str, kind: str, room_id: str) -> bool:
        """The team typing (``typing_on``/``typing_off``) or having read (``mark_seen``), as the customer sees it."""
        action = _ACTIVITY_ACTIONS.get(kind)
        return bool(action) and self.send_sender_action(channel, recipient=recipient, action=action).ok

    def send_sender_action(self, channel: Channel, *, recipient: str, action: str) -> SendResult:
        """Show ``typing_on``/``typing_off`` or ``mark_seen`` to the customer ``recipient`` (a PSID)."""
        if action not in SENDER_ACTIONS:
            raise ValueError(f"unknown sender action {action!r}")
        token = channel.get_secret("page_access_token")
        if not token:
            return configuration_failure("channel has no 'page_access_token' secret")
        body = {"recipient": {"id": recipient}, "sender_action": action}
        answer = graph.graph_post(channel, "me/messages", token=token, body=body)
        if isinstance(answer, SendResult):
            return answer
        if not 200 <= answer.status_code < 300:
            return _failure(answer)
        return SendResult(True)


# The team's activity (channels_app.activity) as Messenger's sender actions.
_ACTIVITY_ACTIONS = {"typing_start": "typing_on", "typing_stop": "typing_off", "read": "mark_seen"}


def message_tag(channel: Channel, content: dict[str, Any]) -> str:
    """The message tag this content may go with outside the window; empty when none."""
    metadata = content.get("metadata") if isinstance(content.get("metadata"), dict) else {}
    candidates = [metadata.get("message_tag"), content.get("name") if content.get("type") == "template" else None]
    candidates.append(channel.config.get("message_tag"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip().upper() in MESSAGE_TAGS:
            return candidate.strip().upper()
    return ""


def _failure(response: httpx.Response) -> SendResult:
    result = graph.failure_for_graph_response(response, permanent_codes=PERMANENT_CODES)
    error = graph.graph_error(graph.json_or_none(response))
    if error is not None and error.subcode in PERMANENT_CODES:
        result.retryable = False
        result.counts_against_breaker = False
        result.retry_after = None
    return result


def _message_id(channel: Channel, response: httpx.Response) -> str:
    reply = graph.json_or_none(response)
    mid = reply.get("message_id") if isinstance(reply, dict) else None
    if not isinstance(mid, str) or not mid:
        logger.warning("messenger %s: a %s answer without message_id", channel.id, response.status_code)
        return ""
    return mid
