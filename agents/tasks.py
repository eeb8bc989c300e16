"""Celery tasks of the agents app (queue "ai"): they take ids, load rows and call the engine."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from agents.generation import generation_execute
from agents.models import Generation, GenerationStatus
from rooms.infra.task_queue import enqueue

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@shared_task(name="agents.tasks.generate_reply_task", ignore_result=True, acks_late=True)
def generate_reply_task(generation_id: str) -> str:
    """Run one pending generation (a repeat of a finished or running one does nothing)."""
    return generation_execute(generation_id)


@shared_task(name="agents.tasks.sweep_generations_task", ignore_result=True)
def sweep_generations_task(*, stale_after_seconds: float = 300.0, pending_after_seconds: float = 30.0) -> int:
    """Re-enqueue generations whose task was lost: pending too long, or running past any loop timeout."""
    now = timezone.now()
    moved = 0
    stale = Generation.objects.filter(
        status=GenerationStatus.RUNNING, started_at__lt=now - timedelta(seconds=stale_after_seconds)
    )
    for gen_id, attempts in stale.values_list("id", "attempts"):
        status = GenerationStatus.PENDING if attempts < MAX_ATTEMPTS else GenerationStatus.FAILED
        Generation.objects.filter(pk=gen_id, status=GenerationStatus.RUNNING).update(status=status, error="worker lost")
    pending = Generation.objects.filter(
        status=GenerationStatus.PENDING, created_at__lt=now - timedelta(seconds=pending_after_seconds)
    )
    for gen_id in pending.values_list("id", flat=True):
        enqueue(generate_reply_task, gen_id)
        moved += 1
    return moved
