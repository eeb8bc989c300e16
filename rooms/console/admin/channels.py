"""Channels in the console: superusers configure them; secrets are write-only.

The form is built from the providers ``channels_app`` registers (through
``rooms.registries``; ``rooms`` never imports the adapters): the provider
choices are those serving the channel's type, each provider has its own
section with its config fields and its secrets, and a save goes through
``channel_upsert``, the service ``manage.py add_channel`` uses, so both
refuse the same things. A small static script (``rooms/channel_form.js``)
narrows the provider choices and shows the chosen provider's section as the
operator picks; without it the server does the same on the next load and
validates on save.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from rooms import registries
from rooms.addresses import is_phone_channel, normalize_channel_address
from rooms.console.actions import audit_record, console_send_test_message
from rooms.enums import ChannelType
from rooms.errors import RoomKitError
from rooms.models import Channel

# The delivery policy's knobs as form fields: (config section, key) -> field. Blank = the default
# (the page shows the effective policy); the sections are validated by channels_app.
_POLICY_FIELDS: dict[str, tuple[str, str, forms.Field]] = {
    "retry_max_retries": ("retry", "max_retries", forms.IntegerField(min_value=0, help_text="after the first attempt")),
    "retry_base_delay_seconds": ("retry", "base_delay_seconds", forms.FloatField(help_text="seconds before the first retry")),
    "retry_max_delay_seconds": (
        "retry",
        "max_delay_seconds",
        forms.FloatField(help_text="seconds; no retry waits longer, jitter and Retry-After included"),
    ),
    "retry_multiplier": ("retry", "multiplier", forms.FloatField(min_value=1, help_text="delay growth per retry")),
    "circuit_breaker_failure_threshold": (
        "circuit_breaker",
        "failure_threshold",
        forms.IntegerField(min_value=1, help_text="consecutive network/5xx/408/429 failures that open the breaker"),
    ),
    "circuit_breaker_recovery_timeout_seconds": (
        "circuit_breaker",
        "recovery_timeout_seconds",
        forms.FloatField(help_text="seconds open, then exactly one probe"),
    ),
    "rate_limit_per_second": ("rate_limit", "per_second", forms.FloatField(help_text="sends; any positive number, e.g. 0.2")),
    "rate_limit_per_minute": ("rate_limit", "per_minute", forms.FloatField(help_text="sends")),
    "rate_limit_per_hour": ("rate_limit", "per_hour", forms.FloatField(help_text="sends")),
}
POLICY_SECTIONS = ("retry", "circuit_breaker", "rate_limit")
for _section, _key, _field in _POLICY_FIELDS.values():
    _field.required = False  # blank: the default

# Declared as a form class so the admin lists the fields like any other.
_PolicyFields = type("_PolicyFields", (forms.Form,), {name: field for name, (_, _, field) in _POLICY_FIELDS.items()})

# A token-verified provider's webhook token is generated and rotated, never typed (channels_app).
_WEBHOOK_TOKEN = "webhook_token"
_CORE_FIELDS = ["id", "name", "channel_type", "provider", "category", "enabled", "creates_rooms"]
_OTHER_FIELDS = ["config", "capabilities", "new_secrets", "configured_secrets"]


def config_field_name(provider: str, key: str) -> str:
    """The form field of ``provider``'s config key ``key``."""
    return f"cfg__{provider}__{key}"


def secret_field_name(provider: str, secret: str) -> str:
    """The (write-only) form field of ``provider``'s secret ``secret``."""
    return f"secret__{provider}__{secret}"


def typed_secrets(provider: registries.ProviderInfo) -> tuple[str, ...]:
    """The secrets an operator types for ``provider`` (a webhook token is generated instead)."""
    return tuple(s for s in provider.secrets if not (provider.webhook == "token" and s == _WEBHOOK_TOKEN))


def _field_text(value: Any) -> str | None:
    """A config value as a text field shows it; None for what only the JSON can hold."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _webhook_kind(provider: registries.ProviderInfo) -> str:
    if provider.webhook == "token":
        return "the vendor cannot sign its webhooks: the webhook URL carries this channel's secret token"
    if provider.webhook:
        return "signed by the vendor, verified with this channel's secrets"
    return "none (this provider takes no webhooks)"


class ProviderSelect(forms.Select):
    """The provider choices, each saying which channel types it serves (``data-channel-types``).

    Providers that do not serve the chosen type are neither shown nor selectable (``hidden``,
    ``disabled``); the static script re-does that when the operator changes the type.
    """

    def __init__(self, *args: Any, served: dict[str, frozenset[str]], channel_type: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.served = served
        self.channel_type = channel_type

    def create_option(self, name: str, value: Any, label: Any, selected: Any, index: int, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, label, selected, index, **kwargs)
        types = self.served.get(str(value))
        if types is not None:
            option["attrs"]["data-channel-types"] = " ".join(sorted(types))
            if self.channel_type and self.channel_type not in types and not selected:
                option["attrs"]["hidden"] = True
                option["attrs"]["disabled"] = True
        return option


class ChannelForm(_PolicyFields, forms.ModelForm):
    """Secrets are write-only: the form says whether each is set, never shows a value.

    Each registered provider has its config fields (``cfg__<provider>__<key>``) and
    secret fields (``secret__<provider>__<name>``); only the chosen provider's are read.
    An empty secret field keeps the stored value. The config JSON holds the rest of the
    config; the delivery policy (``config["retry"]``, ``["circuit_breaker"]``,
    ``["rate_limit"]``) is edited with its own fields. The form is subclassed per request
    with the providers registered then (``channel_form_class``).
    """

    providers: dict[str, registries.ProviderInfo] = {}

    new_secrets = forms.CharField(
        label="Other secrets",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off"}),
        help_text='Secrets the provider\'s section does not list, as a JSON object, e.g. {"name": "…"}. '
        "Write-only: leave empty to keep the current ones.",
    )

    class Meta:
        model = Channel
        fields = ["id", "name", "channel_type", "category", "provider", "config", "capabilities", "creates_rooms", "enabled"]
        labels = {"config": "Other config (JSON)"}
        help_texts = {"config": "Keys the provider's section does not list."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets_to_set: dict[str, str] = {}
        config = self.instance.config if isinstance(self.instance.config, dict) else {}
        self.stored_secret_names = set(self.instance.secret_names) if self.instance.pk else set()
        report = registries.channel_policy_report(self.instance) if self.instance.pk else None
        configured = (report or {}).get("configured") or {}
        for name, (section, key, _) in _POLICY_FIELDS.items():
            value = configured.get(section, {}).get(key)
            if value is not None:
                self.initial[name] = value
        if "provider" in self.fields:
            self.fields["provider"] = self._provider_field()
        current = self.providers.get(self.instance.provider) if self.instance.pk else None
        for provider in self.providers.values():
            for f in provider.config_fields:
                text = _field_text(config.get(f.name))
                if text is not None:
                    self.initial[config_field_name(provider.name, f.name)] = text
            for secret in typed_secrets(provider):
                field = self.fields.get(secret_field_name(provider.name, secret))
                if field is not None:
                    state = "Set: leave empty to keep it" if secret in self.stored_secret_names else "Not set"
                    need = "required" if secret in provider.required_secrets else "optional"
                    field.help_text = f"{state} ({need}). Write-only: the stored value is never shown."
        if "config" in self.fields and not registries.channel_config_errors(config):
            # The fields hold the policy and the provider's keys. A stored policy that is invalid stays in
            # the JSON, where the operator sees it (and must move it to the fields to save): nothing is dropped unseen.
            keys = current.config_fields if current else ()
            in_fields = {f.name for f in keys if _field_text(config.get(f.name)) is not None}
            self.initial["config"] = {k: v for k, v in config.items() if k not in POLICY_SECTIONS and k not in in_fields}

    def chosen_type(self) -> str | None:
        """The channel type the provider choices follow: posted, stored, or asked for (``?channel_type=``)."""
        if self.is_bound:
            return self.data.get(self.add_prefix("channel_type")) or None
        if self.instance.pk:
            return self.instance.channel_type
        return self.initial.get("channel_type") or None

    def _provider_field(self) -> forms.Field:
        choices: list[tuple[str, str]] = [("", "— none (web chat, agents, our own entry points) —")]
        choices += [(p.name, f"{p.label} ({p.name})") for p in self.providers.values()]
        stored = self.instance.provider if self.instance.pk else ""
        if stored and stored not in self.providers:
            choices.append((stored, f"{stored} (not registered)"))
        served = {p.name: p.channel_types for p in self.providers.values()}
        return forms.CharField(
            label="Provider",
            required=False,
            max_length=64,
            widget=ProviderSelect(choices=choices, served=served, channel_type=self.chosen_type()),
            help_text="Choose the channel type first: only the providers serving it are offered.",
        )

    def clean_new_secrets(self) -> dict[str, str]:
        raw = self.cleaned_data.get("new_secrets", "").strip()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError("not valid JSON") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) and v for v in data.values()):
            raise forms.ValidationError("a JSON object of non-empty strings is expected")
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "config" not in self.fields:
            return cleaned
        config = cleaned.get("config")
        if config is None and "config" in self.errors:
            return cleaned
        if not isinstance(config, dict):
            self.add_error("config", "a JSON object is expected")
            return cleaned
        mixed = [k for k in POLICY_SECTIONS if k in config]
        if mixed:
            self.add_error("config", f"set {', '.join(mixed)} with the delivery policy fields, not in the config JSON")
            return cleaned
        provider = self.providers.get(cleaned.get("provider") or "")
        config = {**config, **self._provider_config(provider, config)}
        sections: dict[str, dict[str, Any]] = {}
        for name, (section, key, _) in _POLICY_FIELDS.items():
            value = cleaned.get(name)
            if value is not None:
                sections.setdefault(section, {})[key] = value
        config = {**config, **sections}
        by_path = {f"{section}.{key}": name for name, (section, key, _) in _POLICY_FIELDS.items()}
        for path_, message in registries.channel_config_errors(config):
            field = by_path.get(path_)
            self.add_error(field, message if field else f"{path_}: {message}")
        self.secrets_to_set = self._given_secrets(provider, cleaned.get("new_secrets") or {})
        channel_type = cleaned.get("channel_type")
        catalog = registries.provider_catalog()
        if catalog is not None and channel_type:
            for field, message in catalog.settings_errors(
                channel_type=channel_type,
                provider=cleaned.get("provider") or "",
                config=config,
                secret_names={*self.stored_secret_names, *self.secrets_to_set},
            ):
                self._add_setting_error(provider, field, message)
        cleaned["config"] = config
        return cleaned

    def _provider_config(self, provider: registries.ProviderInfo | None, config: dict[str, Any]) -> dict[str, Any]:
        """The chosen provider's fields as config keys (blank: unset), each checked against the JSON."""
        if provider is None:
            return {}
        stored = self.instance.config if isinstance(self.instance.config, dict) else {}
        values: dict[str, Any] = {}
        for f in provider.config_fields:
            name = config_field_name(provider.name, f.name)
            text = (self.cleaned_data.get(name) or "").strip()
            if not text:
                continue
            if f.name in config and _field_text(config[f.name]) != text:
                self.add_error(name, f"{f.name} is also in the config JSON with another value: set it in one place")
                continue
            # A number stored as a number stays one when the operator did not change it.
            original = stored.get(f.name)
            values[f.name] = original if _field_text(original) == text and not isinstance(original, str) else text
        return values

    def _given_secrets(self, provider: registries.ProviderInfo | None, extra: dict[str, str]) -> dict[str, str]:
        given: dict[str, str] = {}
        if provider is not None:
            for secret in typed_secrets(provider):
                value = self.cleaned_data.get(secret_field_name(provider.name, secret)) or ""
                if value:
                    given[secret] = value
        for secret, value in extra.items():
            if secret in given and given[secret] != value:
                self.add_error("new_secrets", f"{secret} is also typed in its own field: set it in one place")
            given[secret] = value
        return given

    def _add_setting_error(self, provider: registries.ProviderInfo | None, field: str, message: str) -> None:
        """Put a ``channel_settings_errors`` message on the field it names (else on the form)."""
        target: str | None = None
        kind, _, key = field.partition(".")
        if field in ("channel_type", "provider", "config"):
            target = field
        elif kind == "config" and provider is not None:
            target = config_field_name(provider.name, key)
        elif kind == "secrets" and provider is not None:
            target = secret_field_name(provider.name, key)
        if target not in self.fields:
            target = "new_secrets" if kind == "secrets" and "new_secrets" in self.fields else None
            message = f"{field}: {message}"
        self.add_error(target, message)

    def save(self, commit: bool = True) -> Channel:
        channel = super().save(commit=False)
        if self.secrets_to_set:
            channel.set_secrets(self.secrets_to_set)
        if commit:
            channel.save()
        return channel


def channel_form_class(providers: list[registries.ProviderInfo]) -> type[ChannelForm]:
    """``ChannelForm`` with a config field per key and a write-only field per secret of each provider."""
    attrs: dict[str, Any] = {"providers": {p.name: p for p in providers}, "__module__": __name__}
    for provider in providers:
        for f in provider.config_fields:
            help_text = format_html("{}{}", f.help, " Required." if f.required else "")
            attrs[config_field_name(provider.name, f.name)] = forms.CharField(
                label=f"{f.label} ({f.name})", required=False, max_length=2000, help_text=help_text
            )
        for secret in typed_secrets(provider):
            attrs[secret_field_name(provider.name, secret)] = forms.CharField(
                label=secret,
                required=False,
                max_length=4000,
                # Never rendered back, not even after a refused save; browsers must not fill it in.
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            )
    return type("ChannelForm", (ChannelForm,), attrs)


class TestMessageForm(forms.Form):
    recipient = forms.CharField(
        max_length=255,
        help_text="Address on this channel: a phone number in E.164 (+15551234567) on SMS, RCS, WhatsApp and voice "
        "channels; an email, a chat id elsewhere.",
    )
    text = forms.CharField(max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


def channel_webhook_urls(channel: Channel) -> registries.WebhookURLs:
    """The URLs to give the vendor for this channel; empty when its provider takes no webhooks."""
    catalog = registries.provider_catalog()
    if catalog is not None:
        return catalog.webhook_urls(channel)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return registries.WebhookURLs(inbound=base + reverse("webhook", args=[channel.id]))


def _without_token(url: str) -> str:
    return url.partition("?")[0] + "?token=…" if url else ""


def test_message_problem(channel: Channel, recipient: str) -> str | None:
    """Why a test message to ``recipient`` on ``channel`` cannot go out, in words; None when it can.

    On phone-number channels the vendors take E.164 numbers: a short code or a
    sender id (kept as given for inbound senders) is refused here, not by the vendor later.
    """
    catalog = registries.provider_catalog()
    if catalog is not None and channel.provider:
        errors = catalog.settings_errors(
            channel_type=channel.channel_type,
            provider=channel.provider,
            config=channel.config,
            secret_names=channel.secret_names,
        )
        if errors:
            return "not ready to send: " + "; ".join(f"{field}: {message}" for field, message in errors)
    if is_phone_channel(channel.channel_type):
        example = "a phone number in E.164 form, e.g. +15551234567"
        try:
            address = normalize_channel_address(channel.channel_type, channel.config, recipient.strip())
        except RoomKitError as exc:
            return f"{exc.message}; a {channel.channel_type} test message goes to {example}"
        if not address.startswith("+"):
            return f"'{recipient[:40]}' is a short code or sender id, not a phone number; send to {example}"
    return None


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["id", "name", "channel_type", "category", "provider", "enabled", "webhook"]
    list_filter = ["channel_type", "category", "enabled"]
    search_fields = ["id", "name"]
    actions = ["send_test_message"]
    change_form_template = "admin/rooms/channel/change_form.html"

    class Media:
        js = ["rooms/channel_form.js"]

    def _providers(self) -> list[registries.ProviderInfo]:
        return registries.transport_providers()

    def get_form(self, request: HttpRequest, obj: Channel | None = None, change: bool = False, **kwargs: Any) -> type[forms.Form]:
        # Built per request: providers may be registered after this admin is (tests register their own).
        kwargs["form"] = channel_form_class(self._providers())
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if initial.get("channel_type") not in ChannelType.values:
            initial.pop("channel_type", None)
        return initial

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = ["webhook_urls_with_token" if request.user.is_superuser else "webhook_urls", "delivery_policy"]
        if request.user.is_superuser:
            fields.append("configured_secrets")
        if obj is not None:
            fields.append("id")  # a new id would be a new channel: create one instead
        return fields

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = list(dict.fromkeys(super().get_fields(request, obj)))
        if not request.user.is_superuser:
            # Which secrets are set is itself configuration: superusers only. Others read
            # the effective delivery policy, not the form that edits it.
            # The provider's config reads in the config JSON (the fields are the editor's).
            hidden = {"new_secrets", "configured_secrets", *_POLICY_FIELDS}
            fields = [f for f in fields if f not in hidden and not f.startswith(("secret__", "cfg__"))]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        fields = self.get_fields(request, obj)
        present = set(fields)
        if request.method == "POST":
            chosen = request.POST.get("provider", "")
        else:
            chosen = obj.provider if obj is not None else request.GET.get("provider", "")
        sets: list[tuple[str | None, dict[str, Any]]] = [(None, {"fields": [f for f in _CORE_FIELDS if f in present]})]
        webhook = [f for f in ("webhook_urls_with_token", "webhook_urls") if f in present]
        if obj is not None and webhook:
            sets.append(("Webhooks", {"fields": webhook}))
        for provider in self._providers():
            names = [config_field_name(provider.name, f.name) for f in provider.config_fields]
            names += [secret_field_name(provider.name, s) for s in typed_secrets(provider)]
            names = [n for n in names if n in present]
            if not names:
                continue  # nothing to edit here (or nothing this user may edit)
            classes = ["rk-provider", f"rk-provider-{provider.name}"]
            if provider.name != chosen:
                classes.append("collapse")  # a closed <details>: readable without the script
            sets.append(
                (
                    f"{provider.label} ({provider.name})",
                    {"fields": names, "classes": classes, "description": self._provider_description(request, provider)},
                )
            )
        sets.append(("Other config and secrets", {"fields": [f for f in _OTHER_FIELDS if f in present]}))
        policy = [f for f in fields if f in _POLICY_FIELDS or f == "delivery_policy"]
        sets.append(
            (
                "Delivery policy: retry, circuit breaker, rate limits",
                {"fields": policy, "description": "Blank fields use the defaults. All rate limits that are set apply together."},
            )
        )
        return sets

    def _provider_description(self, request: HttpRequest, provider: registries.ProviderInfo) -> str:
        parts = [format_html("Serves: {}.", ", ".join(sorted(provider.channel_types)))]
        if request.user.is_superuser:
            typed = typed_secrets(provider)
            if typed:
                needed = ", ".join(f"{s} ({'required' if s in provider.required_secrets else 'optional'})" for s in typed)
                parts.append(format_html("Secrets: {}.", needed))
        for group in provider.one_of:
            parts.append(format_html("At least one of: {}.", ", ".join(group)))
        parts.append(format_html("Webhooks: {}.", _webhook_kind(provider)))
        return format_html_join(" ", "{}", ((p,) for p in parts))

    @admin.display(description="Effective policy and breaker")
    def delivery_policy(self, obj: Channel | None) -> str:
        if obj is None or obj._state.adding:
            return "—"
        report = registries.channel_policy_report(obj)
        if report is None:
            return "—"
        breaker = report["breaker"]
        state = f"{breaker['state']}, {breaker['failures']} consecutive failure(s)"
        if breaker["opened_at"]:
            state += f", opened at {breaker['opened_at']}"
        if breaker["probe_in_flight"]:
            state += ", probe in flight"
        effective = report["effective"]
        return format_html(
            '<dl class="rk-delivery-policy">'
            "<dt>Retry</dt><dd>{}</dd><dt>Circuit breaker</dt><dd>{}</dd>"
            '<dt>Breaker now</dt><dd class="rk-breaker-state">{}</dd><dt>Rate limits</dt><dd>{}</dd></dl>',
            effective["retry"],
            effective["circuit_breaker"],
            state,
            effective["rate_limit"],
        )

    @admin.display(description="Secrets set")
    def configured_secrets(self, obj: Channel | None) -> str:
        if obj is None or obj._state.adding:
            return "—"
        return ", ".join(obj.secret_names) or "—"

    @admin.display(description="Webhook URL")
    def webhook(self, obj: Channel) -> str:
        urls = channel_webhook_urls(obj)
        if not urls.inbound:
            return "—"
        return format_html("<code>{}</code>", _without_token(urls.inbound) if urls.token_in_url else urls.inbound)

    @admin.display(description="Webhook URLs (paste at the vendor)")
    def webhook_urls(self, obj: Channel | None) -> str:
        return self._webhook_block(obj, show_token=False)

    @admin.display(description="Webhook URLs (paste at the vendor)")
    def webhook_urls_with_token(self, obj: Channel | None) -> str:
        return self._webhook_block(obj, show_token=True)

    def _webhook_block(self, obj: Channel | None, *, show_token: bool) -> str:
        if obj is None or obj._state.adding:
            return "—"
        urls = channel_webhook_urls(obj)
        if not urls.inbound:
            return "— (this channel's provider takes no webhooks)" if obj.provider else "— (no provider)"
        inbound, status = urls.inbound, urls.status
        if urls.token_in_url and not show_token:
            inbound, status = _without_token(inbound), _without_token(status)
        rows = [("Inbound messages", inbound)] + ([("Delivery status callbacks", status)] if status else [])
        block = format_html_join("", '<dt>{}</dt><dd><code class="rk-webhook-url">{}</code></dd>', rows)
        html = format_html('<dl class="rk-webhooks">{}</dl>', block)
        if not urls.token_in_url:
            return html
        rotate = reverse("admin:rooms_channel_rotate_webhook_token", args=[obj.pk])
        if urls.token_missing:
            note = "This channel has no webhook token yet: make one before giving the URL to the vendor."
        elif show_token:
            note = (
                "This vendor does not sign its webhooks: the token in these URLs is the only proof a request comes "
                "from the vendor, so the URLs themselves are the secret. Give them to the vendor only; if they leak, "
                "rotate the token (the old URLs stop working at once)."
            )
        else:
            note = "This vendor does not sign its webhooks: the URLs carry a secret token, shown to superusers only."
        action = format_html(' <a href="{}">Rotate the token…</a>', rotate) if show_token else ""
        return format_html('{}<p class="rk-webhook-token-note"><strong>{}</strong>{}</p>', html, note, action)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        # Deleting a channel would cascade to its bindings (no detach hook or
        # system event) and its outbox rows, and strip its events' source: a
        # channel is disabled (``enabled``) and detached from rooms instead.
        return False

    def save_model(self, request: HttpRequest, obj: Channel, form: ChannelForm, change: bool) -> None:
        catalog = registries.provider_catalog()
        if catalog is None:
            obj.save()  # without channels_app there is nothing more to check or to save through
            return
        try:
            catalog.save(
                channel_id=obj.id,
                channel_type=obj.channel_type,
                provider=obj.provider,
                config=obj.config,
                secrets=form.secrets_to_set,
                name=obj.name,
                category=obj.category,
                capabilities=obj.capabilities,
                creates_rooms=obj.creates_rooms,
                enabled=obj.enabled,
            )
        except RoomKitError as exc:
            # The form checked the same things; only a concurrent change gets here.
            raise _SaveRefused(exc.message) from exc

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _SaveRefused as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> HttpResponse:
        if kwargs.get("add") and not context["adminform"].form.chosen_type():
            # No script needed: a link per type reloads the form with that type's providers.
            context["channel_types"] = ChannelType.choices
        return super().render_change_form(request, context, *args, **kwargs)

    def get_urls(self) -> list[Any]:
        rotate = path(
            "<path:object_id>/rotate-webhook-token/",
            self.admin_site.admin_view(self.rotate_webhook_token_view),
            name="rooms_channel_rotate_webhook_token",
        )
        return [rotate, *super().get_urls()]

    def rotate_webhook_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then give the channel a new webhook token (superusers; token-verified providers only)."""
        if not request.user.is_superuser:
            raise PermissionDenied
        channel = self.get_object(request, unquote(object_id))
        catalog = registries.provider_catalog()
        if channel is None or catalog is None:
            raise Http404("unknown channel")
        change_url = reverse("admin:rooms_channel_change", args=[channel.pk])
        if request.method == "POST":
            try:
                with transaction.atomic():
                    catalog.rotate_webhook_token(channel.pk)
                    audit_record(user=request.user, action="rotate_webhook_token", target=f"channel:{channel.pk}")
            except RoomKitError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                done = "New webhook token made: give the vendor the new URLs; the old ones no longer work."
                self.message_user(request, done, messages.WARNING)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate the webhook token of {channel}",
            "channel": channel,
            "opts": self.model._meta,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/rooms/channel/rotate_webhook_token.html", context)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("send_test_message", None)
        return actions

    @admin.action(description="Send a test message through the delivery path")
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[Channel]) -> HttpResponse | None:
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers send test messages.", messages.ERROR)
            return None
        form = TestMessageForm(request.POST if "recipient" in request.POST else None)
        if form.is_bound and form.is_valid():
            for channel in queryset:
                problem = test_message_problem(channel, form.cleaned_data["recipient"])
                if problem:
                    self.message_user(request, f"{channel.id}: {problem}", messages.ERROR)
                    continue
                try:
                    result = console_send_test_message(
                        user=request.user,
                        channel_id=channel.id,
                        recipient=form.cleaned_data["recipient"],
                        text=form.cleaned_data["text"],
                    )
                except RoomKitError as exc:
                    self.message_user(request, f"{channel.id}: {exc.message}", messages.ERROR)
                    continue
                self.message_user(
                    request, f"{channel.id}: test message planned ({result.deliveries} delivery) in room {result.room_id}."
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a test message",
            "channels": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/rooms/channel/send_test_message.html", context)


class _SaveRefused(Exception):
    """The channel service refused a save the form had accepted (a concurrent change)."""
