"""Channel configuration writes (command line and admin), and the one check both use.

``channel_settings_errors`` is the validation: the provider is registered and
serves the channel type, its required config keys and ``one_of`` groups are
set, and its required secrets are stored or given now. ``channel_upsert`` runs
it (with the delivery-policy check) on every write, so ``manage.py
add_channel`` and the channel admin (through ``rooms.registries``) refuse the
same things with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils.text import slugify

from channels_app.delivery_policy import parse_delivery_policy
from channels_app.providers import get_provider, provider_names
from channels_app.providers.base import ProviderSpec
from channels_app.webhook_tokens import TOKEN_PARAM, WEBHOOK_TOKEN_SECRET, webhook_token_ensure, webhook_token_generate
from rooms import registries
from rooms.enums import ChannelCategory, ChannelType
from rooms.errors import InvalidInput, NotFound
from rooms.models import Channel

_INTELLIGENCE_TYPES = {ChannelType.AI}

# A provider whose vendor cannot sign its webhooks (``ProviderSpec.webhook == "token"``) is
# verified by a channel secret carried in the webhook URL as ``?token=`` (channels_app.webhook_tokens).


def _spec_of(name: str) -> ProviderSpec | None:
    provider = get_provider(name) if name else None
    return getattr(provider, "spec", None)


def provider_info(name: str) -> registries.ProviderInfo | None:
    """The registered provider ``name`` as the admin reads it (its ``ProviderSpec``), if any."""
    spec = _spec_of(name)
    if spec is None:
        return None
    return registries.ProviderInfo(
        name=name,
        label=spec.label,
        channel_types=frozenset(spec.channel_types),
        config_fields=tuple(spec.config_fields),
        secrets=tuple(spec.secrets),
        required_secrets=tuple(spec.required_secrets),
        webhook=spec.webhook,
        status_callbacks=spec.status_callbacks,
        one_of=tuple(tuple(group) for group in spec.one_of),
        one_of_types=frozenset(spec.one_of_types),
    )


def provider_infos(channel_type: str | None = None) -> list[registries.ProviderInfo]:
    """The registered providers (serving ``channel_type`` if given), sorted by name."""
    return [info for name in provider_names(channel_type) if (info := provider_info(name)) is not None]


def channel_settings_errors(
    *, channel_type: str, provider: str, config: Any, secret_names: Iterable[str]
) -> list[tuple[str, str]]:
    """What keeps these channel settings from working with their provider, as ``(field, message)``.

    ``field`` names what to fix: ``"channel_type"``, ``"provider"``, ``"config"`` (not an
    object), ``"config.<key>"`` or ``"secrets.<name>"``. ``secret_names`` are the secrets the
    channel will hold (stored ones plus those given now). Without a provider (a web chat, an
    agent) only the channel type's own checks apply. The delivery policy is checked by ``channels_app.delivery_policy``.
    """
    if channel_type not in ChannelType.values:
        return [("channel_type", f"unknown channel type '{channel_type}'; one of: {', '.join(ChannelType.values)}")]
    if not isinstance(config, dict):
        return [("config", "config must be a JSON object")]
    # The channel type's own settings (a web chat's greeting, a voice channel's voice), whatever the provider.
    type_errors = [(f"config.{key}", message) for key, message in registries.channel_type_config_errors(channel_type, config)]
    if not provider:
        return type_errors
    spec = _spec_of(provider)
    if spec is None:
        return [("provider", f"unknown provider '{provider}'; one of: {', '.join(provider_names()) or 'none registered'}")]
    if channel_type not in spec.channel_types:
        serving = ", ".join(provider_names(channel_type)) or "none"
        message = f"provider '{provider}' ({spec.label}) does not serve {channel_type} channels"
        return [("provider", f"{message}; providers for {channel_type}: {serving}")]
    errors = [(f"config.{key}", message) for key, message in spec.config_errors(config, channel_type)]
    errors += type_errors
    held = set(secret_names)
    for name in spec.required_secrets:
        if spec.webhook == "token" and name == WEBHOOK_TOKEN_SECRET:
            continue  # generated on save (channel_upsert), never typed
        if name not in held:
            errors.append((f"secrets.{name}", f"secret {name} is required by {spec.label} and is not set"))
    return errors


def _refusal(channel_id: str, provider: str, errors: list[tuple[str, str]]) -> InvalidInput:
    detail = "; ".join(f"{field}: {message}" for field, message in errors)
    subject = f"channel '{channel_id}'" + (f" (provider '{provider}')" if provider else "")
    return InvalidInput(f"{subject} cannot be saved: {detail}", code="invalid_channel")


def channel_upsert(
    *,
    channel_id: str,
    channel_type: str,
    provider: str | None = None,
    config: dict | None = None,
    secrets: dict[str, str] | None = None,
    name: str | None = None,
    category: str | None = None,
    capabilities: dict | None = None,
    creates_rooms: bool | None = None,
    enabled: bool | None = None,
) -> tuple[Channel, bool]:
    """Create or update a channel. ``config`` replaces; ``secrets`` are merged, encrypted.

    The result is validated before anything is written, and a refusal
    (``InvalidInput`` naming each field) writes nothing: the delivery policy
    (``retry``, ``circuit_breaker``, ``rate_limit``), then what the provider
    needs (``channel_settings_errors``) of the channel as it would be saved,
    with its stored config and secrets where none are given.

    ``provider``, ``config``, ``name``, ``capabilities``, ``creates_rooms`` and
    ``enabled`` left as None keep their current values on update, so rotating
    a secret cannot silently unhook a channel's adapter. A provider whose
    webhooks carry a token gets one generated when the channel has none.
    """
    if slugify(channel_id) != channel_id or not channel_id:
        raise InvalidInput(f"channel id '{channel_id}' must be a slug (letters, digits, - and _)")
    if channel_type not in ChannelType.values:
        raise InvalidInput(f"unknown channel type '{channel_type}'; one of: {', '.join(ChannelType.values)}")
    if provider and get_provider(provider) is None:
        raise InvalidInput(f"unknown provider '{provider}'; one of: {', '.join(provider_names())}")
    if config is not None and not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    if capabilities is not None and not isinstance(capabilities, dict):
        raise InvalidInput("capabilities must be a JSON object")
    secrets = dict(secrets or {})
    empty = sorted(k for k, v in secrets.items() if not isinstance(v, str) or not v)
    if empty:
        raise InvalidInput(f"secrets.{empty[0]}: empty value (leave a secret out to keep the stored one)", code="invalid_channel")
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
        spec = _spec_of(channel.provider)
        if spec is not None and spec.webhook == "token" and WEBHOOK_TOKEN_SECRET not in secrets:
            if not channel.get_secret(WEBHOOK_TOKEN_SECRET):
                secrets[WEBHOOK_TOKEN_SECRET] = webhook_token_generate()
        errors = channel_settings_errors(
            channel_type=channel.channel_type,
            provider=channel.provider,
            config=channel.config,
            secret_names={*channel.secret_names, *secrets},
        )
        if errors:
            raise _refusal(channel_id, channel.provider, errors)
        if name is not None:
            channel.name = name
        if capabilities is not None:
            channel.capabilities = capabilities
        if creates_rooms is not None:
            channel.creates_rooms = creates_rooms
        if enabled is not None:
            channel.enabled = enabled
        if secrets:
            channel.set_secrets(secrets)
        channel.save()
    return channel, created


def channel_rotate_webhook_token(*, channel_id: str) -> Channel:
    """Give a token-verified channel a new webhook token; the URL with the old one stops working."""
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise NotFound(f"unknown channel '{channel_id}'", code="unknown_channel")
    spec = _spec_of(channel.provider)
    if spec is None or spec.webhook != "token":
        raise InvalidInput(
            f"channel '{channel_id}' is not verified by a webhook token (its provider signs its webhooks or takes none)",
            code="not_token_verified",
        )
    webhook_token_ensure(channel_id=channel_id, rotate=True)
    return Channel.objects.get(pk=channel_id)


def channel_webhook_urls(channel: Channel) -> registries.WebhookURLs:
    """The absolute URLs to give the vendor for this channel (``PUBLIC_BASE_URL``); empty without webhooks.

    For a provider that cannot sign (``webhook == "token"``) both carry the channel's token.
    """
    spec = _spec_of(channel.provider)
    if spec is None or not spec.webhook:
        return registries.WebhookURLs()
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    inbound = base + reverse("webhook", args=[channel.id])
    status = base + reverse("webhook-status", args=[channel.id]) if spec.status_callbacks else ""
    if spec.webhook != "token":
        return registries.WebhookURLs(inbound=inbound, status=status)
    token = channel.get_secret(WEBHOOK_TOKEN_SECRET)
    if not token:
        return registries.WebhookURLs(inbound=inbound, status=status, token_in_url=True, token_missing=True)
    query = f"?{TOKEN_PARAM}={quote(token, safe='')}"
    return registries.WebhookURLs(inbound=inbound + query, status=status + query if status else "", token_in_url=True)


def _rotate_from_admin(channel_id: str) -> None:
    channel_rotate_webhook_token(channel_id=channel_id)


def provider_catalog() -> registries.ProviderCatalog:
    """What the channel admin (in ``rooms``) reads and calls: registered in ``dispatch.register()``."""
    return registries.ProviderCatalog(
        providers=provider_infos,
        settings_errors=channel_settings_errors,
        save=channel_upsert,
        webhook_urls=channel_webhook_urls,
        rotate_webhook_token=_rotate_from_admin,
    )
