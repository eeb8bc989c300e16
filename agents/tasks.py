"""Celery tasks of the agents app (queue "ai"): they take ids, load rows and call the engine."""

from __future__ import annotations

from celery import shared_task

from agents.generation import generation_execute
from agents.services import generations_sweep
from rooms.infra.task_queue import enqueue


@shared_task(name="agents.tasks.generate_reply_task", ignore_result=True, acks_late=True)
def generate_reply_task(generation_id: str) -> str:
    """Run one pending generation (a repeat of a finished or running one does nothing)."""
    return generation_execute(generation_id)


@shared_task(name="agents.tasks.sweep_generations_task", ignore_result=True)
def sweep_generations_task(*, stale_after_seconds: float = 300.0, pending_after_seconds: float = 30.0) -> int:
    """Re-enqueue generations whose task was lost (``agents.services.generations_sweep``); how many."""
    lost = generations_sweep(stale_after_seconds=stale_after_seconds, pending_after_seconds=pending_after_seconds)
    for gen_id in lost:
        enqueue(generate_reply_task, gen_id)
    return len(lost)
