"""Meta's 24-hour customer-service window, as both adapters apply it before a send.

WhatsApp and Messenger let a business write freely only within 24 hours of
the customer's last message to it; after that WhatsApp takes only a template,
Messenger only a message with a tag. The window is read from the room: the
last inbound message on this channel from this customer (their address is the
delivery's recipient). A send that the window refuses is not attempted: it
fails at once (no retry can reopen the window), and the room gets an
Observation saying why, so an operator sees it beside the conversation.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from channels_app.providers.base import SendResult
from rooms.enums import Direction, EventType
from rooms.models import Delivery, Observation, RoomEvent

WINDOW = timedelta(hours=24)
OBSERVATION_KIND = "outside_service_window"
ERROR_CODE = "outside_window"


def last_inbound_at(delivery: Delivery) -> datetime | None:
    """When the recipient last wrote to this channel in the delivery's room; None if never."""
    return (
        RoomEvent.objects.filter(
            room_id=delivery.event.room_id,
            source_channel_id=delivery.channel_id,
            direction=Direction.INBOUND,
            type=EventType.MESSAGE,
            source_participant__address=delivery.recipient,
        )
        .order_by("-seq")
        .values_list("created_at", flat=True)
        .first()
    )


def window_open(delivery: Delivery, *, now: datetime | None = None) -> bool:
    """Whether a free-form message may go to the delivery's recipient now."""
    last = last_inbound_at(delivery)
    return last is not None and (now or timezone.now()) - last < WINDOW


def refuse_outside_window(delivery: Delivery, *, platform: str, remedy: str) -> SendResult:
    """Record on the room why this free-form send did not go, and fail it for good."""
    last = last_inbound_at(delivery)
    since = f"the customer last wrote at {last.isoformat(timespec='seconds')}" if last else "the customer has never written"
    message = f"{platform}: outside the 24-hour customer-service window ({since}); {remedy}"
    Observation.objects.create(
        room_id=delivery.event.room_id,
        event_id=delivery.event_id,
        kind=OBSERVATION_KIND,
        summary=message,
        data={"delivery_id": delivery.pk, "channel_id": delivery.channel_id, "recipient": delivery.recipient},
    )
    return SendResult(False, error=message, retryable=False, counts_against_breaker=False, error_code=ERROR_CODE)
