"""Shared set-up for the core tests: send a message, register a hook for one test, count rows.

Everything goes through the public surface (``process_inbound``, ``rooms.services``,
the ``@hook`` decorator); nothing of ours is mocked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from django.test import SimpleTestCase

from rooms import hooks
from rooms.hooks import HookTrigger
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import ChannelBinding, Delivery, Observation, Participant, Room, RoomEvent, Task

_names = itertools.count(1)


def send(channel_id: str | None, sender: str = "", text: str | None = "hello", **fields: Any) -> InboundResult:
    """One message through the inbound path, as an edge would send it."""
    if "content" in fields:
        text = None
    return process_inbound(InboundMessage(channel_id=channel_id, sender=sender, text=text, **fields))


def use_hook(
    test: SimpleTestCase, trigger: HookTrigger, fn: Callable[..., Any], *, name: str | None = None, **options: Any
) -> str:
    """Register ``fn`` with the public decorator for the duration of ``test``; returns its name."""
    name = name or f"tests.{fn.__name__}.{next(_names)}"
    hooks.hook(trigger, name=name, **options)(fn)
    test.addCleanup(hooks.registry.unregister, trigger, name)
    return name


def row_counts() -> dict[str, int]:
    """How many rows each core table holds: to prove that a failure wrote nothing."""
    return {
        model.__name__: model.objects.count()
        for model in (Room, RoomEvent, ChannelBinding, Participant, Delivery, Observation, Task)
    }


def seqs(room_id: str) -> list[int]:
    return list(RoomEvent.objects.filter(room_id=room_id).order_by("seq").values_list("seq", flat=True))
