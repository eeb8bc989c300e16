"""Where the core reaches the other apps without importing them.

``channels_app`` registers how deliveries are dispatched and the transport
adapters; ``agents`` registers intelligence handlers by channel type; both add
the operator actions their rules own (a delivery's retry, a takeover) to the
console. Each app fills these in its ``AppConfig.ready()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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


# --- a transport channel's delivery policy (retry, circuit breaker, rate limits) ---------------
# Owned by channels_app; the channel admin (in rooms) validates and shows it through these.

ChannelConfigValidator = Callable[[dict], list[tuple[str, str]]]  # config -> [(path, message)], empty when valid
ChannelPolicyReporter = Callable[[Any], dict[str, Any]]  # channel -> {"configured", "effective", "breaker"}

_channel_config_validator: ChannelConfigValidator | None = None
_channel_policy_reporter: ChannelPolicyReporter | None = None


def set_channel_policy_handlers(*, validator: ChannelConfigValidator, reporter: ChannelPolicyReporter) -> None:
    global _channel_config_validator, _channel_policy_reporter
    _channel_config_validator = validator
    _channel_policy_reporter = reporter


def channel_config_errors(config: dict) -> list[tuple[str, str]]:
    """What is wrong with a channel config's delivery policy, as ``(path, message)`` pairs."""
    return _channel_config_validator(config) if _channel_config_validator else []


def channel_policy_report(channel: Any) -> dict[str, Any] | None:
    """The channel's configured and effective delivery policy and its breaker's state, if known."""
    return _channel_policy_reporter(channel) if _channel_policy_reporter else None


# --- operator actions on a room that another app's rules own (the console lists and audits them) ---

ConsoleAction = Callable[[Any, str, dict[str, str]], str]  # (operator, room_id, params) -> what happened

_console_actions: dict[str, ConsoleAction] = {}


def register_console_action(name: str, fn: ConsoleAction) -> None:
    """Offer ``name`` as a room action in the console; ``fn`` raises ``RoomKitError`` to refuse."""
    _console_actions[name] = fn


def console_action(name: str) -> ConsoleAction | None:
    return _console_actions.get(name)
