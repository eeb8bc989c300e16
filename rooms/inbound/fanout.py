"""Who gets a stored event: Delivery rows for transports, intelligence targets, sockets."""

from __future__ import annotations

from rooms.enums import (
    PUSH_CHANNEL_TYPES,
    ChannelCategory,
    DeliveryStatus,
)
from rooms.inbound.after_commit import AfterCommit
from rooms.inbound.transcoding import Transcoded, transcode_for
from rooms.inbound.visibility import should_receive, visible_to
from rooms.models import ChannelBinding, Delivery, RoomEvent
from rooms.selectors import get_channel


def plan_fanout(
    event: RoomEvent, bindings: list[ChannelBinding], source: ChannelBinding | None, after: AfterCommit
) -> list[Delivery]:
    """Delivery rows (unsaved) for transport targets; intelligence targets and socket publicity."""
    source_id = source.id if source is not None else None
    transcoded: dict[str, Transcoded] = {}
    deliveries: list[Delivery] = []
    public = False
    for b in bindings:
        # The channel's current settings (short TTL cache), not the copy that
        # came with a cached binding.
        ch = get_channel(b.channel_id)
        if not ch.enabled or not should_receive(b, visibility=event.visibility, source_binding_id=source_id):
            continue
        if b.category == ChannelCategory.INTELLIGENCE:
            after.intelligence.append((ch.channel_type, b.id))
            continue
        if ch.channel_type in PUSH_CHANNEL_TYPES:
            public = True
            continue
        caps = ch.effective_capabilities()
        key = repr(sorted(caps.items()))
        if key not in transcoded:
            transcoded[key] = transcode_for(event.content, caps)
        fitted = transcoded[key]
        if fitted.content is None:
            # Nothing to say on this channel: recorded as failed (with an
            # Observation, by the caller), never sent as an empty message.
            deliveries.append(
                Delivery(
                    event=event,
                    binding=b,
                    channel=ch,
                    recipient=b.address,
                    content=event.content,
                    status=DeliveryStatus.FAILED,
                    last_error=fitted.failure,
                )
            )
            continue
        deliveries.append(
            Delivery(event=event, binding=b, channel=ch, recipient=b.address, content=fitted.content, segments=fitted.segments)
        )
    # Sockets of this room also see events aimed at everyone or at transports,
    # even when no socket binding happens to be attached yet (operators, API).
    after.public = public or visible_to(event.visibility, channel_id="", category=ChannelCategory.TRANSPORT)
    return deliveries
