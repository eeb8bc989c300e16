"""Channels in the console: superusers configure them; secrets are write-only."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from rooms import registries
from rooms.console.actions import console_send_test_message
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


class ChannelForm(_PolicyFields, forms.ModelForm):
    """Secrets are write-only: the form shows their names, never their values.

    The delivery policy (``config["retry"]``, ``["circuit_breaker"]``,
    ``["rate_limit"]``) is edited with its own fields, not in the config JSON,
    which shows the rest of the config.
    """

    new_secrets = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='JSON object of secrets to set, e.g. {"signing_secret": "…"}. Leave empty to keep the current ones.',
    )

    class Meta:
        model = Channel
        fields = ["id", "name", "channel_type", "category", "provider", "config", "capabilities", "creates_rooms", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.instance.config if isinstance(self.instance.config, dict) else {}
        report = registries.channel_policy_report(self.instance) if self.instance.pk else None
        configured = (report or {}).get("configured") or {}
        for name, (section, key, _) in _POLICY_FIELDS.items():
            value = configured.get(section, {}).get(key)
            if value is not None:
                self.initial[name] = value
        if "config" in self.fields and not registries.channel_config_errors(config):
            # The fields hold the policy. A stored policy that is invalid stays in the JSON, where
            # the operator sees it (and must move it to the fields to save): nothing is dropped unseen.
            self.initial["config"] = {k: v for k, v in config.items() if k not in POLICY_SECTIONS}

    def clean_new_secrets(self) -> dict[str, str]:
        raw = self.cleaned_data.get("new_secrets", "").strip()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError("not valid JSON") from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise forms.ValidationError("a JSON object of strings is expected")
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
        sections: dict[str, dict[str, Any]] = {}
        for name, (section, key, _) in _POLICY_FIELDS.items():
            value = cleaned.get(name)
            if value is not None:
                sections.setdefault(section, {})[key] = value
        config = {**config, **sections}
        by_path = {f"{section}.{key}": name for name, (section, key, _) in _POLICY_FIELDS.items()}
        for path, message in registries.channel_config_errors(config):
            field = by_path.get(path)
            self.add_error(field, message if field else f"{path}: {message}")
        cleaned["config"] = config
        return cleaned

    def save(self, commit: bool = True) -> Channel:
        channel = super().save(commit=False)
        if self.cleaned_data.get("new_secrets"):
            channel.set_secrets(self.cleaned_data["new_secrets"])
        if commit:
            channel.save()
        return channel


class TestMessageForm(forms.Form):
    recipient = forms.CharField(max_length=255, help_text="Address on this channel: a phone number, an email, a chat id.")
    text = forms.CharField(max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


def webhook_url(channel: Channel) -> str:
    """The URL to paste at the vendor for this channel's inbound webhooks."""
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{channel.id}/"


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["id", "name", "channel_type", "category", "provider", "enabled", "webhook"]
    list_filter = ["channel_type", "category", "enabled"]
    search_fields = ["id", "name"]
    actions = ["send_test_message"]

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = ["webhook", "delivery_policy"]
        if request.user.is_superuser:
            fields.append("configured_secrets")
        return fields

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = list(super().get_fields(request, obj))
        if not request.user.is_superuser:
            # Which secrets are set is itself configuration: superusers only. Others read
            # the effective delivery policy, not the form that edits it.
            hidden = {"new_secrets", "configured_secrets", *_POLICY_FIELDS}
            fields = [f for f in fields if f not in hidden]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        fields = self.get_fields(request, obj)
        policy = [f for f in fields if f in _POLICY_FIELDS or f == "delivery_policy"]
        return [
            (None, {"fields": [f for f in fields if f not in policy]}),
            (
                "Delivery policy: retry, circuit breaker, rate limits",
                {
                    "fields": policy,
                    "description": "Blank fields use the defaults. All rate limits that are set apply together.",
                },
            ),
        ]

    @admin.display(description="Effective policy and breaker")
    def delivery_policy(self, obj: Channel | None) -> str:
        if obj is None or not obj.pk:
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
    def configured_secrets(self, obj: Channel) -> str:
        return ", ".join(obj.secret_names) or "—"

    @admin.display(description="Webhook URL (paste at the vendor)")
    def webhook(self, obj: Channel) -> str:
        if obj is None or not obj.pk:
            return "—"
        return format_html("<code>{}</code>", webhook_url(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        # Deleting a channel would cascade to its bindings (no detach hook or
        # system event) and its outbox rows, and strip its events' source: a
        # channel is disabled (``enabled``) and detached from rooms instead.
        return False

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
