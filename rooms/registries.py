"""Where the core reaches the other apps without importing them.

``channels_app`` registers how deliveries are dispatched and the transport
adapters; ``agents`` registers intelligence handlers by channel type; both add
the operator actions their rules own (a delivery's retry, a takeover) to the
console. Each app fills these in its ``AppConfig.ready()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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


# Other apps' checks of a channel type's config, whatever its provider (the voice app checks a voice
# channel's ``config["voice"]``): config -> (config key, message) pairs.
ChannelTypeCheck = Callable[[dict], list[tuple[str, str]]]
_channel_type_checks: dict[str, list[ChannelTypeCheck]] = {}


def register_channel_type_check(channel_type: str, check: ChannelTypeCheck) -> None:
    """Check the config of every ``channel_type`` channel with ``check`` when it is saved."""
    _channel_type_checks.setdefault(channel_type, []).append(check)


def channel_type_config_errors(channel_type: str, config: dict) -> list[tuple[str, str]]:
    """What the registered checks of ``channel_type`` find wrong in ``config``."""
    return [error for check in _channel_type_checks.get(channel_type, ()) for error in check(config)]


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


# --- actions on the channel list that a provider offers (filled by channels_app) ----------------

# (operator, the selected channels) -> what happened, as (level "info" | "error", message) lines.
ChannelAdminActionFn = Callable[[Any, Any], list[tuple[str, str]]]


@dataclass(frozen=True)
class ChannelAdminAction:
    """An action a provider adds to the channel admin (Telegram: register the webhook). Superusers only; audited."""

    name: str
    description: str
    run: ChannelAdminActionFn


_channel_admin_actions: dict[str, ChannelAdminAction] = {}


def register_channel_admin_action(name: str, description: str, fn: ChannelAdminActionFn) -> None:
    _channel_admin_actions[name] = ChannelAdminAction(name, description, fn)


def channel_admin_actions() -> list[ChannelAdminAction]:
    return list(_channel_admin_actions.values())


# --- long-lived work other apps run beside the server (filled by their AppConfig.ready) ------------

# (celery: background work runs in Celery workers, no_workers: serve starts none) ->
# (a line for serve's banner, "" when there is nothing to run; the child processes it started).
ServeStarter = Callable[[bool, bool], tuple[str, list[Any]]]

_serve_starters: dict[str, ServeStarter] = {}


def register_serve_starter(label: str, fn: ServeStarter) -> None:
    """``manage.py serve`` calls ``fn`` as it starts (its children are stopped with the server)."""
    _serve_starters[label] = fn


def serve_starters() -> dict[str, ServeStarter]:
    return dict(_serve_starters)


# --- the team's activity shown on the customer's app (filled by channels_app) ----------------------

# (room_id, kind): kind is "typing_start", "typing_stop" or "read" (the team read the conversation).
ActivityRelay = Callable[[str, str], None]

_activity_relay: ActivityRelay | None = None


def set_activity_relay(fn: ActivityRelay) -> None:
    global _activity_relay
    _activity_relay = fn


def relay_activity(room_id: str, kind: str) -> None:
    """Show the team's typing or reading on the room's messaging apps that can show it (never blocks on a vendor)."""
    if _activity_relay is not None:
        _activity_relay(room_id, kind)


# --- storing an operator's attachment (filled by channels_app, which stores and serves media) ---

# (the uploaded file) -> the fields of a media content: {"url", "mime_type", "filename", "size"};
# raises RoomKitError (400, 413, 415) to refuse it.
MediaStore = Callable[[Any], dict[str, Any]]

_media_store: MediaStore | None = None


def register_media_store(fn: MediaStore) -> None:
    global _media_store
    _media_store = fn


def media_store() -> MediaStore | None:
    return _media_store


# --- the transport providers, for the channel admin (filled by channels_app) -------------------
# The admin offers, per channel type, the providers registered in channels_app, shows their
# config fields and secrets, and saves a channel through channels_app's one validation. It reads
# them as the plain records below: rooms never imports the adapters.


@dataclass(frozen=True)
class ProviderConfigField:
    """One key of a channel's config that a provider reads."""

    name: str
    label: str
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class ProviderInfo:
    """What a registered provider serves and needs (its ``ProviderSpec``), for the channel form.

    ``webhook``: ``"signature"`` (the vendor signs its webhooks), ``"token"`` (it cannot; the
    webhook URL carries the channel's secret token) or ``""`` (no webhooks).
    """

    name: str
    label: str
    channel_types: frozenset[str]
    config_fields: tuple[ProviderConfigField, ...] = ()
    secrets: tuple[str, ...] = ()
    required_secrets: tuple[str, ...] = ()
    webhook: str = "signature"
    status_callbacks: bool = True
    one_of: tuple[tuple[str, ...], ...] = ()
    # The channel types ``one_of`` applies to; empty: every type.
    one_of_types: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WebhookURLs:
    """Where the vendor posts a channel's webhooks; empty strings when it takes none.

    ``token_in_url``: the URLs carry the channel's webhook token (the vendor does not sign):
    whoever has them can post as the vendor. ``token_missing``: such a channel has no token yet.
    """

    inbound: str = ""
    status: str = ""
    token_in_url: bool = False
    token_missing: bool = False


@dataclass(frozen=True)
class ProviderCatalog:
    """The channels app's answers about providers and channel settings.

    - ``providers(channel_type)``: the registered providers (serving ``channel_type`` if given), by name.
    - ``settings_errors(channel_type=, provider=, config=, secret_names=)``: what keeps these settings
      from working, as ``(field, message)``; ``field`` is ``"channel_type"``, ``"provider"``,
      ``"config"``, ``"config.<key>"`` or ``"secrets.<name>"``. The delivery policy is checked apart
      (``channel_config_errors``).
    - ``save(**fields)``: create or update a channel through the one service that validates it
      (``channel_upsert``); raises ``RoomKitError`` when refused. Returns ``(channel, created)``.
    - ``webhook_urls(channel)``: the channel's webhook URLs (with its token for a token provider).
    - ``rotate_webhook_token(channel_id)``: a new webhook token; the old URL stops working.
    """

    providers: Callable[[str | None], list[ProviderInfo]]
    settings_errors: Callable[..., list[tuple[str, str]]]
    save: Callable[..., tuple[Any, bool]]
    webhook_urls: Callable[[Any], WebhookURLs]
    rotate_webhook_token: Callable[[str], None]


_provider_catalog: ProviderCatalog | None = None


def set_provider_catalog(catalog: ProviderCatalog) -> None:
    """Called by ``channels_app`` once, from its ``AppConfig.ready()``."""
    global _provider_catalog
    _provider_catalog = catalog


def provider_catalog() -> ProviderCatalog | None:
    """The channels app's provider catalog; None when that app is not installed."""
    return _provider_catalog


def transport_providers(channel_type: str | None = None) -> list[ProviderInfo]:
    """The registered transport providers (those serving ``channel_type`` if given), sorted by name."""
    return _provider_catalog.providers(channel_type) if _provider_catalog else []


# --- a provider's own page on a channel (filled by channels_app: WhatsApp's message templates) ---


@dataclass(frozen=True)
class ChannelTable:
    """What a provider shows about one channel, read from its vendor when asked: a table, or why there is none."""

    title: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    error: str = ""
    note: str = ""


ChannelTableView = Callable[[Any], ChannelTable]  # (channel) -> its table; never raises for vendor errors

_channel_tables: dict[str, tuple[str, ChannelTableView]] = {}


def register_channel_table(provider: str, label: str, fn: ChannelTableView) -> None:
    """Offer ``label`` (a link on the channel's admin page) for channels of ``provider``; ``fn`` reads the table."""
    _channel_tables[provider] = (label, fn)


def channel_table(provider: str) -> tuple[str, ChannelTableView] | None:
    return _channel_tables.get(provider)
