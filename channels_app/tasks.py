"""Delivery tasks: take an id, call the delivery service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="channels_app.tasks.deliver_event_task", ignore_result=True, acks_late=True)
def deliver_event_task(delivery_id: int) -> str:
    from channels_app.services import delivery_attempt

    return delivery_attempt(delivery_id=delivery_id)


@shared_task(name="channels_app.tasks.sweep_outbox_task", ignore_result=True)
def sweep_outbox_task() -> int:
    from channels_app.services import sweep_outbox

    return sweep_outbox()
