"""Wires this app into the core's registries (called from AppConfig.ready)."""

from __future__ import annotations

from rooms import registries
from rooms.infra.task_queue import enqueue


def _dispatch(delivery_ids: list[int]) -> None:
    from channels_app.tasks import deliver_event_task

    for delivery_id in delivery_ids:
        enqueue(deliver_event_task, delivery_id)


def register() -> None:
    from channels_app.delivery_policy import delivery_policy_errors
    from channels_app.providers import register_provider
    from channels_app.providers.http import HTTPWebhookProvider
    from channels_app.providers.meta.messenger.provider import MessengerProvider
    from channels_app.providers.meta.whatsapp.provider import WhatsAppCloudProvider
    from channels_app.providers.meta.whatsapp.templates import message_templates_table
    from channels_app.providers.neonize import NeonizeWhatsAppProvider
    from channels_app.providers.sinch import SinchSMSProvider
    from channels_app.providers.teams import TeamsProvider
    from channels_app.providers.telegram import TelegramProvider
    from channels_app.providers.telnyx import TelnyxProvider
    from channels_app.providers.twilio import TwilioProvider
    from channels_app.providers.voicemeup import VoiceMeUpSMSProvider
    from channels_app.selectors import channel_policy_report
    from channels_app.services_channels import provider_catalog

    registries.set_delivery_dispatcher(_dispatch)
    # The team's typing and reading on the customer's messaging app (channels_app.activity).
    from channels_app.activity import relay as relay_activity

    registries.set_activity_relay(relay_activity)
    registries.set_channel_policy_handlers(validator=delivery_policy_errors, reporter=channel_policy_report)
    registries.set_provider_catalog(provider_catalog())
    register_provider("http", HTTPWebhookProvider)
    register_provider("sinch", SinchSMSProvider)
    register_provider("twilio", TwilioProvider)
    register_provider("voicemeup", VoiceMeUpSMSProvider)
    register_provider("telnyx", TelnyxProvider)
    register_provider("telegram", TelegramProvider)
    from channels_app.providers.telegram import webhook_setup as telegram_setup

    registries.register_channel_admin_action(
        "telegram_register_webhook", "Telegram: register the webhook with Telegram", telegram_setup.admin_register_webhooks
    )
    registries.register_channel_admin_action(
        "telegram_webhook_info", "Telegram: show the webhook Telegram holds", telegram_setup.admin_show_webhook_info
    )
    register_provider("teams", TeamsProvider)
    register_provider("whatsapp_cloud", WhatsAppCloudProvider)
    register_provider("messenger", MessengerProvider)
    registries.register_channel_table("whatsapp_cloud", "Message templates at Meta…", message_templates_table)
    register_provider("neonize", NeonizeWhatsAppProvider)
