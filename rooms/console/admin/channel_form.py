"""The channel form: the fields of every registered provider, write-only secrets, the delivery policy.

Built per request from the providers ``channels_app`` registers (read through
``rooms.registries``): each provider has its config fields and secret fields,
and only the chosen provider's are read. The checks are channels_app's
(``ProviderCatalog.settings_errors`` and the delivery-policy validator), so the
form refuses what ``manage.py add_channel`` refuses, each on its own field.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.html import format_html

from rooms import registries
from rooms.models import Channel

# The delivery policy's knobs as form fields: (config section, key) -> field. Blank = the default
# (the page shows the effective policy); the sections are validated by channels_app.
POLICY_FIELDS: dict[str, tuple[str, str, forms.Field]] = {
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
for _section, _key, _field in POLICY_FIELDS.values():
    _field.required = False  # blank: the default

# Declared as a form class so the admin lists the fields like any other.
_PolicyFields = type("_PolicyFields", (forms.Form,), {name: field for name, (_, _, field) in POLICY_FIELDS.items()})

# A token-verified provider's webhook token is generated and rotated, never typed (channels_app).
_WEBHOOK_TOKEN = "webhook_token"


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
        for name, (section, key, _) in POLICY_FIELDS.items():
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
        # No max_length here (it would render as a select's maxlength): the model field checks it.
        return forms.CharField(
            label="Provider",
            required=False,
            widget=ProviderSelect(choices=choices, served=served, channel_type=self.chosen_type()),
            help_text="Choose the channel type first: only the providers serving it are offered.",
        )

    def clean_capabilities(self) -> Any:
        value = self.cleaned_data.get("capabilities")
        if value is not None and not isinstance(value, dict):
            raise forms.ValidationError("a JSON object is expected")
        return value

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
        for name, (section, key, _) in POLICY_FIELDS.items():
            value = cleaned.get(name)
            if value is not None:
                sections.setdefault(section, {})[key] = value
        config = {**config, **sections}
        by_path = {f"{section}.{key}": name for name, (section, key, _) in POLICY_FIELDS.items()}
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
