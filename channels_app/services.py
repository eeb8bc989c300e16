"""Deliveries: attempt, retry with backoff, dead-letter, status callbacks, operator retry.

A delivery is a row first (planned by the inbound path) and a task second.
Attempts claim the row with a conditional UPDATE, so two workers holding the
same task id never send twice; a worker that dies mid-send leaves the row in
``sending`` for the outbox sweeper to release after
``ROOMKIT_DELIVERY_STUCK_SECONDS``, and the next attempt carries the same
idempotency key (``delivery_idempotency_key``) to the vendor.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_app import resilience
from channels_app.delivery_policy import DeliveryPolicy, RetryPolicy, channel_delivery_policy
from channels_app.providers import SendResult, StatusUpdate, get_provider
from rooms.enums import DeliveryStatus
from rooms.errors import Conflict, NotFound
from rooms.hooks import HookTrigger
from rooms.infra.backoff import retry_delay
from rooms.infra.task_queue import enqueue
from rooms.models import Channel, Delivery

logger = logging.getLogger(__name__)

CHANNEL_DISABLED_RECHECK_SECONDS = 60.0
# How far a status callback may move a delivery: only forward (a late "sent"
# after "delivered", or a repeated callback, changes nothing).
_RANK = {
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.UNDELIVERED: 3,
    DeliveryStatus.READ: 4,
    DeliveryStatus.FAILED: 4,
    DeliveryStatus.DEAD: 4,
}


def delivery_policy(channel: Channel) -> DeliveryPolicy:
    """The retry, breaker and rate-limit policy the channel's deliveries run under."""
    return channel_delivery_policy(channel.config)


def backoff_seconds(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """Delay before the retry that follows attempt ``attempt``: the vendor's Retry-After or
    exponential backoff with jitter, never above the policy's ``max_delay_seconds``."""
    return retry_delay(
        attempt,
        base=policy.base_delay_seconds,
        maximum=policy.max_delay_seconds,
        multiplier=policy.multiplier,
        retry_after=retry_after,
    )


def stuck_sending_after() -> timedelta:
    """How long a delivery may stay in ``sending`` before the sweeper presumes its worker dead."""
    return timedelta(seconds=settings.ROOMKIT_DELIVERY_STUCK_SECONDS)


def longest_countdown() -> float:
    """The longest wait handed to the broker as a countdown; longer ones are the sweeper's.

    A Redis broker gives an unacknowledged message (a countdown waits in a
    worker, unacknowledged) to another worker after its visibility timeout: a
    countdown near it would be run twice, or held by two workers at once.
    """
    return settings.ROOMKIT_CELERY_VISIBILITY_TIMEOUT / 2


def _schedule(delivery_id: int, delay: float) -> None:
    from channels_app.tasks import deliver_event_task

    if delay > longest_countdown():
        # The row says when it is due (next_attempt_at); sweep_outbox enqueues it then.
        return
    enqueue(deliver_event_task, delivery_id, countdown=delay)


def _fire_status(delivery_id: int) -> None:
    from rooms.tasks import fire_hooks_task

    enqueue(fire_hooks_task, HookTrigger.ON_DELIVERY_STATUS.value, "delivery", delivery_id)


def delivery_attempt(*, delivery_id: int) -> str:
    """Try to send one delivery now. Returns the status it ends in.

    A disabled channel, an open circuit breaker (or a half-open one whose probe
    another worker holds) and a full rate-limit window defer the row: that is
    not an attempt, and it comes back when the wait is over.
    """
    now = timezone.now()
    claimed = Delivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
        return "skipped"
    delivery = Delivery.objects.select_related("channel", "event").get(pk=delivery_id)
    channel = delivery.channel
    policy = delivery_policy(channel)

    if not channel.enabled:
        # An operator switched the channel off: hold its outbox, lose nothing.
        return _defer(delivery_id, now, CHANNEL_DISABLED_RECHECK_SECONDS, "channel disabled")
    if delivery.attempts > policy.retry.max_attempts_total:
        # Only a release of stalled attempts gets here (a failed attempt past the budget is
        # settled dead): a delivery whose every send dies with its worker (it crashes or
        # exhausts the worker) must not go round forever.
        lost = SendResult(False, error="retries exhausted: attempts lost with their workers", counts_against_breaker=False)
        return _settle(delivery, lost, policy.retry)
    # The breaker first: an open one costs no rate-limit budget.
    gate = resilience.breaker_allow(channel.id, policy.circuit_breaker)
    if not gate.allowed:
        return _defer(delivery_id, now, gate.wait, gate.reason)
    wait = resilience.rate_limit_acquire(channel.id, policy.rate_limit)
    if wait > 0:
        if gate.probe_token:
            # Hand the half-open probe on rather than hold it through the wait.
            resilience.breaker_record(channel.id, policy.circuit_breaker, "neutral", probe_token=gate.probe_token)
        return _defer(delivery_id, now, wait, "rate limited")

    provider = get_provider(channel.provider)
    if provider is None:
        result = SendResult(False, error=f"no provider named '{channel.provider}'", retryable=False, counts_against_breaker=False)
    else:
        try:
            result = provider.send(channel, delivery)
        except Exception as exc:  # an adapter bug must not strand the row in 'sending'
            logger.exception("provider %s raised while sending delivery %s", channel.provider, delivery_id)
            result = SendResult(False, error=f"{type(exc).__name__}: {exc}", retryable=True)
    outcome = "success" if result.ok else ("failure" if result.sick else "neutral")
    resilience.breaker_record(channel.id, policy.circuit_breaker, outcome, probe_token=gate.probe_token)
    return _settle(delivery, result, policy.retry)


def _defer(delivery_id: int, now, delay: float, reason: str) -> str:
    """Not an attempt: give the claim back and come back after ``delay`` seconds."""
    Delivery.objects.filter(pk=delivery_id).update(
        status=DeliveryStatus.PENDING,
        attempts=F("attempts") - 1,
        next_attempt_at=now + timedelta(seconds=delay),
        last_error=reason,
    )
    _schedule(delivery_id, delay)
    return DeliveryStatus.PENDING


def _settle(delivery: Delivery, result: SendResult, policy: RetryPolicy) -> str:
    now = timezone.now()
    if result.ok:
        status = result.status or DeliveryStatus.SENT
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            sent_at=now,
            provider_message_id=result.provider_message_id[:255],
            last_error="",
            error_code="",
            sent_as=result.sent_as[:16],
            next_attempt_at=None,
            updated_at=now,
        )
    elif result.retryable and delivery.attempts <= policy.max_retries:
        status = DeliveryStatus.PENDING
        delay = backoff_seconds(delivery.attempts, policy, result.retry_after)
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            last_error=result.error[:2000],
            error_code=result.error_code[:64],
            next_attempt_at=now + timedelta(seconds=delay),
            updated_at=now,
        )
        _schedule(delivery.pk, delay)
    else:
        # Retries exhausted: dead letter. A non-retryable answer: failed.
        status = DeliveryStatus.DEAD if result.retryable else DeliveryStatus.FAILED
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            last_error=result.error[:2000],
            error_code=result.error_code[:64],
            next_attempt_at=None,
            updated_at=now,
        )
        logger.warning("delivery %s to %s %s: %s", delivery.pk, delivery.channel_id, status, result.error[:200])
    _fire_status(delivery.pk)
    return status


def delivery_retry(*, delivery_id: int) -> Delivery:
    """Operator action: send a failed or dead-lettered delivery again."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound(f"unknown delivery {delivery_id}")
        if delivery.status not in (DeliveryStatus.FAILED, DeliveryStatus.DEAD):
            raise Conflict(f"delivery is {delivery.status}; only failed or dead deliveries are retried")
        Delivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None, updated_at=timezone.now()
        )
        transaction.on_commit(lambda: _schedule(delivery_id, 0))
    delivery.refresh_from_db()
    return delivery


def delivery_apply_status(*, channel: Channel, update: StatusUpdate) -> int:
    """Apply a provider's status callback; returns how many deliveries changed."""
    rank = _RANK.get(update.status)
    if rank is None:
        return 0
    changed = 0
    for delivery in Delivery.objects.filter(channel=channel, provider_message_id=update.provider_message_id):
        if _RANK.get(delivery.status, 0) >= rank:
            continue
        fields = {"status": update.status, "updated_at": timezone.now()}
        if update.error:
            fields["last_error"] = update.error[:2000]
        if update.error_code:
            fields["error_code"] = update.error_code[:64]
        if update.sent_as:
            fields["sent_as"] = update.sent_as[:16]
        changed += Delivery.objects.filter(pk=delivery.pk, status=delivery.status).update(**fields)
        _fire_status(delivery.pk)
    return changed


def sweep_outbox(*, now=None, limit: int = 500) -> int:
    """Re-enqueue deliveries that are due, and release ones stuck in 'sending'.

    A row in ``sending`` longer than ``ROOMKIT_DELIVERY_STUCK_SECONDS`` lost its
    worker mid-send (killed, or its host gone): the vendor may or may not have
    the message, so it goes again, with the same idempotency key, and the
    attempt it lost still counts.
    """
    now = now or timezone.now()
    released = Delivery.objects.filter(status=DeliveryStatus.SENDING, updated_at__lt=now - stuck_sending_after()).update(
        status=DeliveryStatus.PENDING, next_attempt_at=now, last_error="released after a stalled attempt"
    )
    if released:
        logger.warning("outbox sweep released %d deliveries stuck in 'sending' (their worker died mid-send)", released)
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    for delivery_id in due:
        _schedule(delivery_id, 0)
    return len(due)
