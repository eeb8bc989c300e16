"""Who receives an event: visibility, access and mute, as pure rules.

Visibility values: ``all``, ``none``, ``transport``, ``intelligence``,
``internal`` (operators only) or a comma-separated list of channel ids.
"""

from __future__ import annotations

from rooms.enums import Access, Visibility

_RECEIVES = frozenset({Access.READ_WRITE, Access.READ_ONLY})
_SENDS = frozenset({Access.READ_WRITE, Access.WRITE_ONLY})


def can_send(access: str) -> bool:
    return access in _SENDS


def can_receive(access: str) -> bool:
    return access in _RECEIVES


def visible_to(visibility: str, *, channel_id: str, category: str) -> bool:
    if visibility == Visibility.ALL:
        return True
    if visibility in (Visibility.NONE, Visibility.INTERNAL):
        return False
    if visibility in (Visibility.TRANSPORT, Visibility.INTELLIGENCE):
        return category == visibility
    return channel_id in {v.strip() for v in visibility.split(",")}


def should_receive(binding, *, visibility: str, source_binding_id: int | None) -> bool:
    """Whether ``binding`` gets a copy of an event with ``visibility``."""
    if binding.id == source_binding_id or binding.muted:
        return False
    if not can_receive(binding.access):
        return False
    return visible_to(visibility, channel_id=binding.channel_id, category=binding.category)
