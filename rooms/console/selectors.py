"""Reads for the operator console's dashboard."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from rooms.enums import ChannelType, DeliveryStatus, EventStatus, EventType, RoomStatus
from rooms.models import Delivery, Room, RoomEvent

# Replies by the house: AI agents and operators. Everything else that sends a
# message into a room speaks for the customer.
RESPONDER_CHANNEL_TYPES = (ChannelType.AI, ChannelType.CONSOLE)
FIRST_RESPONSE_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class ChannelVolume:
    channel_id: str
    count: int
    percent: float


@dataclass(frozen=True)
class DashboardStats:
    open_rooms: int
    paused_rooms: int
    failed_deliveries: int
    dead_deliveries: int
    messages_24h: list[ChannelVolume] = field(default_factory=list)
    median_first_response_seconds: float | None = None
    first_response_samples: int = 0


def messages_per_channel(*, since: timedelta = timedelta(hours=24)) -> list[ChannelVolume]:
    """Messages stored in the last ``since`` per source channel, most first."""
    rows = list(
        RoomEvent.objects.filter(type=EventType.MESSAGE, created_at__gte=timezone.now() - since)
        .values("source_channel_id")
        .annotate(n=Count("id"))
        .order_by("-n", "source_channel_id")
    )
    top = max((r["n"] for r in rows), default=0)
    return [
        ChannelVolume(r["source_channel_id"] or "system", r["n"], round(100.0 * r["n"] / top, 1) if top else 0.0) for r in rows
    ]


def first_response_seconds(*, window: timedelta = FIRST_RESPONSE_WINDOW) -> list[float]:
    """For rooms active in ``window``: seconds from the first customer message to the first reply after it.

    The customer's message is the room's first stored message from a channel
    that is neither an AI agent nor the console; the reply is the first
    message after it from an AI agent or an operator. Rooms not answered yet
    are left out.
    """
    messages = RoomEvent.objects.filter(room_id=OuterRef("pk"), type=EventType.MESSAGE, status=EventStatus.DELIVERED)
    customer = messages.exclude(source_channel__channel_type__in=RESPONDER_CHANNEL_TYPES).exclude(source_channel=None)
    rooms = (
        Room.objects.filter(last_activity_at__gte=timezone.now() - window)
        .annotate(first_in=Subquery(customer.order_by("seq").values("created_at")[:1]))
        .annotate(
            first_out=Subquery(
                messages.filter(source_channel__channel_type__in=RESPONDER_CHANNEL_TYPES, created_at__gte=OuterRef("first_in"))
                .order_by("seq")
                .values("created_at")[:1]
            )
        )
        .filter(first_in__isnull=False, first_out__isnull=False)
        .values_list("first_in", "first_out")
    )
    return [max((out - first).total_seconds(), 0.0) for first, out in rooms]


def dashboard_stats() -> DashboardStats:
    """Everything the admin index shows, in a handful of queries."""
    rooms = Room.objects.aggregate(
        open=Count("id", filter=Q(status=RoomStatus.ACTIVE)), paused=Count("id", filter=Q(status=RoomStatus.PAUSED))
    )
    deliveries = Delivery.objects.aggregate(
        failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)), dead=Count("id", filter=Q(status=DeliveryStatus.DEAD))
    )
    samples = first_response_seconds()
    return DashboardStats(
        open_rooms=rooms["open"],
        paused_rooms=rooms["paused"],
        failed_deliveries=deliveries["failed"],
        dead_deliveries=deliveries["dead"],
        messages_24h=messages_per_channel(),
        median_first_response_seconds=statistics.median(samples) if samples else None,
        first_response_samples=len(samples),
    )
