"""Celery tasks of the voice app (beat-scheduled housekeeping; nothing latency-bound runs here)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="voice.tasks.expire_recordings_task", ignore_result=True)
def expire_recordings_task() -> int:
    from voice.services import voice_recordings_expire

    return voice_recordings_expire()
