"""The team's typing and reading, shown on the customer's messaging app where the platform can show it.

The inbox publishes an operator's typing and reading to the room's sockets;
``rooms.registries.relay_activity`` hands the same to this module, which runs
it as a background task (a vendor's latency never holds up the operator's
request) for each transport binding of the room whose adapter has
``show_activity(channel, recipient, kind, room_id)``: Messenger's sender
actions, Telegram's chat action, WhatsApp's read receipt and typing indicator.
What a platform cannot show is skipped; a failure is logged and never retried
(the next keystroke or read says it again).
"""

from __future__ import annotations

import logging

from celery import shared_task

from channels_app.providers import get_provider
from rooms.enums import ChannelCategory
from rooms.infra.task_queue import enqueue
from rooms.models import ChannelBinding

logger = logging.getLogger(__name__)

KINDS = frozenset({"typing_start", "typing_stop", "read"})


def relay(room_id: str, kind: str) -> None:
    """What ``rooms.registries.relay_activity`` calls: queue the task (only for kinds a platform may show)."""
    if kind in KINDS:
        enqueue(show_activity_task, room_id, kind)


@shared_task(name="channels_app.activity.show_activity_task", ignore_result=True)
def show_activity_task(room_id: str, kind: str) -> int:
    """Show ``kind`` on each messaging app of the room that can; how many were told."""
    bindings = ChannelBinding.objects.filter(
        room_id=room_id, category=ChannelCategory.TRANSPORT, muted=False, channel__enabled=True
    ).select_related("channel")
    told = 0
    for binding in bindings:
        provider = get_provider(binding.channel.provider)
        show = getattr(provider, "show_activity", None)
        if show is None or not binding.address:
            continue
        try:
            if show(binding.channel, binding.address, kind, room_id):
                told += 1
        except Exception:  # a platform's hiccup must not stop the others; the next activity says it again
            logger.warning("activity %s for room %s on %s failed", kind, room_id, binding.channel_id, exc_info=True)
    return told
