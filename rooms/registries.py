"""Where the core reaches the other apps without importing them.

``channels_app`` registers how deliveries are dispatched and the transport
adapters; ``agents`` registers intelligence handlers by channel type. Each
app fills these in its ``AppConfig.ready()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

DeliveryDispatcher = Callable[[list[int]], None]
IntelligenceHandler = Callable[[str, int], None]  # (event_id, binding_id)

_delivery_dispatcher: DeliveryDispatcher | None = None
_intelligence_handlers: dict[str, IntelligenceHandler] = {}


def set_delivery_dispatcher(fn: DeliveryDispatcher) -> None:
    global _delivery_dispatcher
    _delivery_dispatcher = fn


def dispatch_deliveries(delivery_ids: list[int]) -> None:
    if _delivery_dispatcher is None:
        # Rows stay pending; the outbox sweeper sends them once a dispatcher exists.
        logger.warning("no delivery dispatcher registered; %d deliveries left pending", len(delivery_ids))
        return
    _delivery_dispatcher(delivery_ids)


def register_intelligence_handler(channel_type: str, fn: IntelligenceHandler) -> None:
    _intelligence_handlers[channel_type] = fn


def intelligence_handler(channel_type: str) -> IntelligenceHandler | None:
    return _intelligence_handlers.get(channel_type)
