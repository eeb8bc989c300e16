"""Transport adapters, one per vendor, behind one small protocol.

An adapter knows its vendor's API and nothing of rooms: it verifies and parses
inbound webhooks into ``InboundMessage`` objects, answers the provider, and
sends one delivery. Adapters are found by the channel's ``provider`` name.
"""

from __future__ import annotations

from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    TransportProvider,
    delivery_idempotency_key,
    get_provider,
    provider_names,
    register_provider,
)

__all__ = [
    "ConfigField",
    "InboundParse",
    "ProviderSpec",
    "SendResult",
    "StatusUpdate",
    "TransportProvider",
    "delivery_idempotency_key",
    "get_provider",
    "provider_names",
    "register_provider",
]
