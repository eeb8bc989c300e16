"""Wires this app into the core's registries (called from AppConfig.ready)."""

from __future__ import annotations

from rooms import registries
from rooms.task_queue import enqueue


def _dispatch(delivery_ids: list[int]) -> None:
    from channels_app.tasks import deliver_event_task

    for delivery_id in delivery_ids:
        enqueue(deliver_event_task, delivery_id)


def register() -> None:
    from channels_app.providers import register_provider
    from channels_app.providers.http import HTTPWebhookProvider

    registries.set_delivery_dispatcher(_dispatch)
    register_provider("http", HTTPWebhookProvider)
