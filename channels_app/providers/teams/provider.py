"""The Microsoft Teams adapter (provider ``teams``): a bot on the Bot Framework.

Inbound: Bot Framework posts each activity to ``/webhooks/<channel_id>/`` with
a JWT that ``auth.py`` verifies against the channel's ``app_id`` (403 and
nothing stored otherwise); ``activities.py`` reads it. The activity id is the
event's provider message id, so Bot Framework's redelivery stores nothing new.
Once stored, the conversation reference it carried is kept on the room's
binding (``remember_conversation``), so answers and later (proactive) messages
know the service URL, the bot's and the user's ids and the tenant.

Outbound: a client-credentials token (``tokens.py``), then ``POST
{serviceUrl}/v3/conversations/{conversationId}/activities`` with the content as
text or an Adaptive Card (``cards.py``). The answer's ``id`` is the delivery's
provider message id. The Bot Connector reports no delivery or read status:
an accepted send is ``sent`` and stays so. It takes no idempotency key either,
so a retry after a lost answer may show the message twice (the outbox retries
only what failed, or whose worker died mid-send).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
from django.http import HttpRequest, HttpResponse, JsonResponse

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    configuration_failure,
    inbound_json_response,
)
from channels_app.providers.teams import activities, cards
from channels_app.providers.teams.auth import DEFAULT_OPENID_METADATA_URL, verify_bot_framework_token
from channels_app.providers.teams.tokens import DEFAULT_TOKEN_URL, TokenError, bot_tokens, token_url_for
from rooms.enums import ChannelType, DeliveryStatus, Direction
from rooms.inbound import InboundResult
from rooms.infra.http import json_object_body
from rooms.models import Channel, ChannelBinding, Delivery, RoomEvent

logger = logging.getLogger(__name__)

REFERENCE_KEY = "teams"


def metadata_url(channel: Channel) -> str:
    return str(channel.config.get("openid_metadata_url") or "").strip() or DEFAULT_OPENID_METADATA_URL


class TeamsProvider:
    """Microsoft Teams through the Bot Framework: signed activities in, Bot Connector activities out."""

    name = "teams"
    spec = ProviderSpec(
        label="Microsoft Teams (Bot Framework)",
        channel_types=frozenset({ChannelType.TEAMS}),
        config_fields=(
            ConfigField("app_id", "App ID", required=True, help="The bot's Microsoft App ID (its Azure Bot registration)"),
            ConfigField(
                "openid_metadata_url",
                "OpenID metadata URL",
                help=f"Where the signing keys of inbound tokens are published; default {DEFAULT_OPENID_METADATA_URL}",
            ),
            ConfigField("token_url", "Token URL", help=f"The bot's token endpoint; default {DEFAULT_TOKEN_URL}"),
            ConfigField("tenant_id", "Tenant ID", help="Single-tenant bots only: takes the tenant's token endpoint"),
        ),
        secrets=("app_password",),
        required_secrets=("app_password",),
        webhook="signature",
        status_callbacks=False,
    )

    # --- inbound ------------------------------------------------------------

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        app_id = str(channel.config.get("app_id") or "").strip()
        try:
            body = json.loads(request.body)
        except (ValueError, RecursionError):
            body = None
        # A body without them is refused by the parser (a 400) if the token is good.
        service_url = body.get("serviceUrl") if isinstance(body, dict) and isinstance(body.get("serviceUrl"), str) else None
        channel_id = body.get("channelId") if isinstance(body, dict) and isinstance(body.get("channelId"), str) else None
        return verify_bot_framework_token(
            request.headers.get("Authorization"),
            app_id=app_id,
            metadata_url=metadata_url(channel),
            service_url=service_url,
            channel_id=channel_id,
        )

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        activity = activities.read_activity(json_object_body(request))
        if activity.type == activities.MESSAGE:
            return InboundParse([activities.inbound_message(channel, activity)])
        if activity.type == activities.CONVERSATION_UPDATE:
            event = activities.members_event(channel, activity)
            if event is not None:
                return InboundParse([event])
        # Typing, reactions, installation updates…: acknowledged (Bot Framework retries anything else), not stored.
        return InboundParse([], response=JsonResponse({"ignored": activity.type[:64]}))

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        for result in results:
            if result.event is not None and result.room_id:
                reference = (result.event.metadata or {}).get(REFERENCE_KEY)
                if isinstance(reference, dict):
                    remember_conversation(channel=channel, room_id=result.room_id, reference=reference)
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        # The Bot Connector sends no delivery statuses.
        return []

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    # --- outbound -----------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        app_id = str(channel.config.get("app_id") or "").strip()
        password = channel.get_secret("app_password")
        if not app_id or not password:
            return configuration_failure("channel needs config app_id and secret app_password")
        reference = conversation_reference_for(delivery)
        if reference is None:
            return SendResult(
                False,
                error="no conversation reference: a bot writes only into conversations it has had an activity from",
                retryable=False,
                counts_against_breaker=False,
                error_code="no_conversation_reference",
            )
        max_actions = int(channel.effective_capabilities().get("max_buttons") or cards.MAX_ACTIONS)
        activity = {
            "type": "message",
            "from": {"id": reference.get("bot_id", f"28:{app_id}"), **_named(reference.get("bot_name"))},
            "conversation": {"id": reference["conversation_id"]},
            **cards.activity_for(delivery.content or {}, max_actions=max_actions),
        }
        if reference.get("user_id"):
            activity["recipient"] = {"id": reference["user_id"], **_named(reference.get("user_name"))}
        url = f"{reference['service_url'].rstrip('/')}/v3/conversations/{quote(reference['conversation_id'], safe='')}/activities"
        token_url = token_url_for(channel.config)
        credentials = {"token_url": token_url, "app_id": app_id, "app_password": password}
        for attempt in (1, 2):
            try:
                token = bot_tokens.token(**credentials)
            except TokenError as exc:
                return SendResult(False, error=str(exc), retryable=exc.retryable, retry_after=exc.retry_after, error_code="token")
            try:
                response = http_client().post(url, json=activity, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                return failure_for_exception(exc)
            if response.status_code == 401 and attempt == 1:
                # A token the Connector no longer takes (revoked, keys rotated): one fresh token, one more try.
                bot_tokens.forget(**credentials, token=token)
                continue
            break
        if not 200 <= response.status_code < 300:
            result = failure_for_response(response, detail=_connector_error(response))
            result.error_code = str(response.status_code)
            return result
        activity_id = _answer_id(response)
        return SendResult(True, provider_message_id=activity_id, status=DeliveryStatus.SENT)


def _named(name: str | None) -> dict[str, str]:
    return {"name": name} if name else {}


def _answer_id(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    value = body.get("id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def _connector_error(response: httpx.Response) -> str:
    """The Connector's ``{"error": {"code", "message"}}``, short; else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code') or ''}: {error.get('message') or ''}"[:300]
    return response.text[:300]


def remember_conversation(*, channel: Channel, room_id: str, reference: dict[str, Any]) -> None:
    """Keep the latest conversation reference on the room's binding of ``channel`` at that conversation.

    Idempotent (a redelivered activity writes the same), and written only when
    it changed, so a conversation's every message costs no extra write.
    """
    conversation_id = reference.get("conversation_id")
    if not isinstance(conversation_id, str) or not conversation_id:
        return
    for binding in ChannelBinding.objects.filter(room_id=room_id, channel=channel, address=conversation_id):
        if (binding.metadata or {}).get(REFERENCE_KEY) != reference:
            binding.metadata = {**(binding.metadata or {}), REFERENCE_KEY: reference}
            binding.save(update_fields=["metadata"])


def conversation_reference_for(delivery: Delivery) -> dict[str, str] | None:
    """Where a delivery goes: its binding's conversation reference, else the last one an event of this conversation carried."""
    binding = ChannelBinding.objects.filter(pk=delivery.binding_id).values_list("metadata", flat=True).first()
    reference = (binding or {}).get(REFERENCE_KEY) if isinstance(binding, dict) else None
    if not _usable(reference, delivery.recipient):
        metadata = (
            RoomEvent.objects.filter(
                room_id=delivery.event.room_id,
                source_channel_id=delivery.channel_id,
                direction=Direction.INBOUND,
                **{f"metadata__{REFERENCE_KEY}__conversation_id": delivery.recipient},
            )
            .order_by("-seq")
            .values_list("metadata", flat=True)
            .first()
        )
        reference = (metadata or {}).get(REFERENCE_KEY) if isinstance(metadata, dict) else None
    return reference if _usable(reference, delivery.recipient) else None


def _usable(reference: Any, recipient: str) -> bool:
    return (
        isinstance(reference, dict)
        and reference.get("conversation_id") == recipient
        and isinstance(reference.get("service_url"), str)
        and reference["service_url"].startswith(("https://", "http://"))
    )
