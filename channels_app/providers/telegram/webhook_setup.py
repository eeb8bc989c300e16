"""Registering a Telegram channel's webhook with Telegram, and reading back what Telegram has.

``setWebhook`` (https://core.telegram.org/bots/api#setwebhook) with our
inbound URL (``PUBLIC_BASE_URL`` + ``/webhooks/<channel_id>/``), the
channel's ``webhook_secret`` as ``secret_token`` (Telegram then sends it in
``X-Telegram-Bot-Api-Secret-Token`` with every update) and the update kinds
the adapter reads as ``allowed_updates``; ``getWebhookInfo`` for what Telegram
holds (its URL, updates waiting, its last delivery error); ``deleteWebhook``.
Used by ``manage.py telegram_webhook`` and the channel admin's action.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from channels_app.providers.telegram import api, updates
from rooms.enums import ChannelType
from rooms.errors import InvalidInput
from rooms.models import Channel


class TelegramSetupError(InvalidInput):
    """The channel cannot be set up, or Telegram refused: the message says why (never the token)."""


def webhook_url(channel: Channel) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("webhook", args=[channel.id])


def _credentials(channel: Channel) -> tuple[str, str]:
    if channel.provider != "telegram" or channel.channel_type != ChannelType.TELEGRAM:
        raise TelegramSetupError(f"channel '{channel.id}' is not a Telegram channel", code="not_telegram")
    token, secret = channel.get_secret("bot_token"), channel.get_secret("webhook_secret")
    if not token:
        raise TelegramSetupError(f"channel '{channel.id}' has no 'bot_token' secret", code="not_configured")
    return token, secret or ""


def _call(channel: Channel, token: str, method: str, payload: dict[str, Any] | None = None) -> Any:
    try:
        return api.call(channel, token, method, payload)
    except api.BotAPIError as exc:
        raise TelegramSetupError(f"{method}: {exc}", code="telegram_refused") from None


def telegram_webhook_register(*, channel: Channel, drop_pending_updates: bool = False) -> dict[str, Any]:
    """Point the bot's webhook at this channel; returns ``getWebhookInfo``'s answer afterwards."""
    token, secret = _credentials(channel)
    if not secret:
        # Without it every update would be refused (403): register nothing rather than a dead webhook.
        raise TelegramSetupError(f"channel '{channel.id}' has no 'webhook_secret' secret", code="not_configured")
    payload = {
        "url": webhook_url(channel),
        "secret_token": secret,
        "allowed_updates": list(updates.ALLOWED_UPDATES),
        "drop_pending_updates": drop_pending_updates,
    }
    _call(channel, token, "setWebhook", payload)
    return telegram_webhook_info(channel=channel)


def telegram_webhook_info(*, channel: Channel) -> dict[str, Any]:
    """What Telegram holds for this bot's webhook (``WebhookInfo``)."""
    token, _secret = _credentials(channel)
    info = _call(channel, token, "getWebhookInfo")
    return info if isinstance(info, dict) else {}


def telegram_webhook_delete(*, channel: Channel) -> None:
    token, _secret = _credentials(channel)
    _call(channel, token, "deleteWebhook")


def describe_webhook_info(channel: Channel, info: dict[str, Any]) -> list[str]:
    """``WebhookInfo`` as lines for an operator: the URL (and whether it is ours), what waits, the last error."""
    url = info.get("url") or ""
    ours = url == webhook_url(channel)
    lines = [
        f"URL: {url or '(none: no webhook set)'}" + ("" if not url else " (this channel)" if ours else " (NOT this channel)")
    ]
    lines.append(f"pending updates: {info.get('pending_update_count', 0)}")
    if info.get("allowed_updates"):
        lines.append("allowed updates: " + ", ".join(str(u) for u in info["allowed_updates"]))
    if info.get("max_connections"):
        lines.append(f"max connections: {info['max_connections']}")
    if info.get("ip_address"):
        lines.append(f"IP address: {info['ip_address']}")
    if info.get("last_error_date"):
        when = datetime.fromtimestamp(int(info["last_error_date"]), tz=UTC).isoformat()
        lines.append(f"last error: {info.get('last_error_message', '')} at {when}")
    return lines


def admin_register_webhooks(user: Any, channels: Any) -> list[tuple[str, str]]:
    """The channel admin's action: register each selected Telegram channel's webhook, and show what Telegram says."""
    outcome: list[tuple[str, str]] = []
    for channel in channels:
        try:
            info = telegram_webhook_register(channel=channel)
        except TelegramSetupError as exc:
            outcome.append(("error", f"{channel.id}: {exc.message}"))
            continue
        outcome.append(
            ("info", f"{channel.id}: webhook registered with Telegram. " + "; ".join(describe_webhook_info(channel, info)))
        )
    return outcome


def admin_show_webhook_info(user: Any, channels: Any) -> list[tuple[str, str]]:
    """The channel admin's action: what Telegram holds for each selected channel's bot (``getWebhookInfo``)."""
    outcome: list[tuple[str, str]] = []
    for channel in channels:
        try:
            info = telegram_webhook_info(channel=channel)
        except TelegramSetupError as exc:
            outcome.append(("error", f"{channel.id}: {exc.message}"))
            continue
        outcome.append(("info", f"{channel.id}: " + "; ".join(describe_webhook_info(channel, info))))
    return outcome
