"""The Telegram adapter (provider ``telegram``): a bot, through the Bot API over httpx.

Inbound: Telegram posts each ``Update`` to ``/webhooks/<channel_id>/`` with
the ``secret_token`` given to ``setWebhook`` in
``X-Telegram-Bot-Api-Secret-Token``; it must equal the channel's secret
``webhook_secret`` (compared in constant time), else 403 and nothing stored.
Telegram does not sign the body: that header is all it offers, and with HTTPS
it is enough. ``updates.py`` reads the update.

Outbound: ``POST {api_base}/bot{bot_token}/<method>`` with JSON:
``sendMessage`` (text; rich content with an inline keyboard, see
``keyboards.py``), ``sendPhoto``/``sendVoice``/``sendAudio``/``sendVideo``/
``sendDocument`` by URL for media (Telegram fetches our media URL), and
``sendLocation``. The delivery records Telegram's ``message_id``. Telegram
sends bots no delivery or read receipts, so a send it accepted is ``sent``
and stays so: there is no status callback.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    configuration_failure,
    inbound_json_response,
)
from channels_app.providers.telegram import api, keyboards, updates
from rooms.enums import ChannelType, DeliveryStatus
from rooms.inbound import InboundResult
from rooms.inbound.transcoding import truncate
from rooms.infra.http import json_object_body
from rooms.models import Channel, Delivery

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096
MAX_CAPTION = 1024


def _media_method(mime_type: str) -> tuple[str, str]:
    """``(method, its file field)`` for a file of ``mime_type`` sent by URL."""
    major = mime_type.split("/", 1)[0].lower()
    if mime_type.lower() in ("image/jpeg", "image/png", "image/webp"):
        return "sendPhoto", "photo"
    if mime_type.lower() in ("audio/ogg", "audio/opus"):
        # A voice note: Telegram plays OGG/Opus (and MP3, M4A) as one.
        return "sendVoice", "voice"
    if major == "audio":
        return "sendAudio", "audio"
    if mime_type.lower() == "video/mp4":
        return "sendVideo", "video"
    return "sendDocument", "document"


def outbound_request(chat_id: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The Bot API method and JSON body that send ``content`` to ``chat_id``; None when it renders to nothing."""
    kind = content.get("type")
    body: dict[str, Any] = {"chat_id": chat_id}
    if kind == "location":
        return "sendLocation", {**body, "latitude": content["latitude"], "longitude": content["longitude"]}
    if kind in ("media", "audio", "video"):
        mime = str(content.get("mime_type") or "")
        if kind == "audio":
            method, field = _media_method(mime or "audio/ogg")
        elif kind == "video":
            method, field = "sendVideo", "video"
        else:
            method, field = _media_method(mime)
        body[field] = content["url"]
        caption = content.get("caption") or (content.get("transcript") if kind == "audio" else None)
        if caption:
            body["caption"] = truncate(caption, MAX_CAPTION)
        return method, body
    text, markup = keyboards.rich_message(content)
    text = truncate(text.strip(), MAX_TEXT)
    if not text:
        return None
    body["text"] = text
    if markup is not None:
        body["reply_markup"] = markup
    return "sendMessage", body


class TelegramProvider:
    """A Telegram bot: one channel per bot token."""

    name = "telegram"
    spec = ProviderSpec(
        label="Telegram (Bot API)",
        channel_types=frozenset({ChannelType.TELEGRAM}),
        config_fields=(ConfigField("api_base", "API base URL", help=f"Default {api.DEFAULT_API_BASE}"),),
        secrets=("bot_token", "webhook_secret"),
        required_secrets=("bot_token", "webhook_secret"),
        webhook="signature",
        status_callbacks=False,
    )

    # --- webhooks -------------------------------------------------------------------------

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        """The secret header equals the channel's ``webhook_secret``, compared in constant time."""
        expected = channel.get_secret("webhook_secret")
        given = request.headers.get(SECRET_HEADER)
        if not expected or not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        """One update as messages; a kind we do not take is acknowledged (Telegram resends anything but a 2xx)."""
        update = updates.parse_update(json_object_body(request))
        messages = updates.inbound_messages(channel, update)
        if not messages:
            return InboundParse(
                [], response=JsonResponse({"ignored": update.kind or "empty update", "update_id": update.update_id})
            )
        return InboundParse(messages)

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        """200. For a button press, the answer is itself a Bot API call: ``answerCallbackQuery``, so the button stops spinning.

        Telegram runs a method given as the webhook's answer
        (https://core.telegram.org/bots/api#making-requests-when-getting-updates),
        which saves a request and cannot fail the stored message.
        """
        event = results[0].event
        telegram = event.metadata.get("telegram") if event is not None and isinstance(event.metadata, dict) else None
        query_id = telegram.get("callback_query_id") if isinstance(telegram, dict) else None
        if isinstance(query_id, str) and query_id:
            return JsonResponse({"method": "answerCallbackQuery", "callback_query_id": query_id})
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate] | InboundParse:
        # Telegram has no delivery receipts; only updates come, and they come to the inbound URL.
        return []

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    # --- sending --------------------------------------------------------------------------

    def show_activity(self, channel: Channel, recipient: str, kind: str, room_id: str) -> bool:
        """The team typing, as Telegram's "typing…" chat action (it shows for 5 s or until our message).

        Telegram shows bots no read receipts to give, and a stop needs no call.
        """
        token = channel.get_secret("bot_token")
        if kind != "typing_start" or not token:
            return False
        try:
            api.call(channel, token, "sendChatAction", {"chat_id": recipient, "action": "typing"}, timeout=5.0)
        except api.BotAPIError:
            return False
        return True

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery with the Bot API method its content needs; Telegram's ``message_id`` is recorded."""
        token = channel.get_secret("bot_token")
        if not token:
            return configuration_failure("channel has no 'bot_token' secret")
        if not delivery.recipient:
            return SendResult(False, error="delivery has no recipient", retryable=False, counts_against_breaker=False)
        request = outbound_request(delivery.recipient, delivery.content)
        if request is None:
            return SendResult(False, error="nothing to send to Telegram", retryable=False, counts_against_breaker=False)
        method, body = request
        try:
            result = api.call(channel, token, method, body)
        except api.BotAPIError as exc:
            return api.failure_for_error(exc)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if not isinstance(message_id, int):
            logger.warning("telegram %s: %s answered ok without a message_id", channel.id, method)
            return SendResult(True, status=DeliveryStatus.SENT)
        return SendResult(True, provider_message_id=str(message_id), status=DeliveryStatus.SENT)
