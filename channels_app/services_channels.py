"""Channel configuration writes (command line and admin)."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from channels_app.delivery_policy import parse_delivery_policy
from channels_app.providers import get_provider, provider_names
from rooms.enums import ChannelCategory, ChannelType
from rooms.errors import InvalidInput
from rooms.models import Channel

_INTELLIGENCE_TYPES = {ChannelType.AI}


def channel_upsert(
    *,
    channel_id: str,
    channel_type: str,
    provider: str | None = None,
    config: dict | None = None,
    secrets: dict[str, str] | None = None,
    name: str | None = None,
    category: str | None = None,
) -> tuple[Channel, bool]:
    """Create or update a channel. ``config`` replaces; ``secrets`` are merged, encrypted.

    The config's delivery policy (``retry``, ``circuit_breaker``, ``rate_limit``)
    is validated first; a bad value raises ``InvalidInput`` and nothing is saved.

    ``provider``, ``config`` and ``name`` left as None keep their current values
    on update, so rotating a secret cannot silently unhook a channel's adapter.
    """
    if slugify(channel_id) != channel_id or not channel_id:
        raise InvalidInput(f"channel id '{channel_id}' must be a slug (letters, digits, - and _)")
    if channel_type not in ChannelType.values:
        raise InvalidInput(f"unknown channel type '{channel_type}'; one of: {', '.join(ChannelType.values)}")
    if provider and get_provider(provider) is None:
        raise InvalidInput(f"unknown provider '{provider}'; one of: {', '.join(provider_names())}")
    if config is not None and not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    if config is not None:
        parse_delivery_policy(config)  # retry / circuit_breaker / rate_limit: refused with the bad key named
    category = category or (ChannelCategory.INTELLIGENCE if channel_type in _INTELLIGENCE_TYPES else ChannelCategory.TRANSPORT)
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        created = channel is None
        if created:
            channel = Channel(id=channel_id)
        channel.channel_type = channel_type
        channel.category = category
        if provider is not None or created:
            channel.provider = provider or ""
        if config is not None:
            channel.config = config
        if name is not None:
            channel.name = name
        if secrets:
            channel.set_secrets(secrets)
        channel.save()
    return channel, created
