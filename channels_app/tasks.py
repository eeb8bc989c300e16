"""Delivery tasks: take an id, call the delivery service.

``deliver_event_task`` runs on the ``deliveries`` queue (``CELERY_TASK_ROUTES``)
and is idempotent: the service claims the row with a conditional UPDATE, so a
message delivered twice (a redelivery, a sweep, a duplicate) sends at most once
per claim. ``acks_late`` and ``reject_on_worker_lost`` keep a message whose
worker died before the claim; a worker that dies after it (mid-send) leaves the
row in ``sending`` for ``sweep_outbox_task`` (beat) to release. A message that
kills its worker cannot loop through redelivery: the run that comes back finds
the row claimed and ends. A database
that cannot be reached (a failover, its connection limit) retries the task
with backoff rather than leave the row to the next sweep.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(
    name="channels_app.tasks.deliver_event_task",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Before the claim nothing happened; after it, the retry finds the row claimed and the
    # sweeper releases it: either way no second send without the same idempotency key.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=60,
    max_retries=8,
)
def deliver_event_task(delivery_id: int) -> str:
    """Attempt one delivery now (claim, breaker, rate limit, send, settle); returns its status."""
    from channels_app.services import delivery_attempt

    return delivery_attempt(delivery_id=delivery_id)


@shared_task(name="channels_app.tasks.sweep_outbox_task", ignore_result=True)
def sweep_outbox_task() -> int:
    """Release deliveries stuck in ``sending`` and enqueue the ones that are due."""
    from channels_app.services import sweep_outbox

    return sweep_outbox()
