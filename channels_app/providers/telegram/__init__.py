"""Telegram bots (provider ``telegram``) through the Bot API.

``api`` calls the Bot API and classifies its errors, ``updates`` reads
inbound updates, ``keyboards`` turns rich content into inline keyboards,
``provider`` is the adapter, ``webhook_setup`` registers the webhook with
Telegram (``manage.py telegram_webhook`` and the channel admin's action).
"""

from channels_app.providers.telegram.provider import TelegramProvider

__all__ = ["TelegramProvider"]
