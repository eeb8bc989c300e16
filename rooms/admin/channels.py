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

from rooms.console import console_send_test_message
from rooms.errors import RoomKitError
from rooms.models import Channel


class ChannelForm(forms.ModelForm):
    """Secrets are write-only: the form shows their names, never their values."""

    new_secrets = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='JSON object of secrets to set, e.g. {"signing_secret": "…"}. Leave empty to keep the current ones.',
    )

    class Meta:
        model = Channel
        fields = ["id", "name", "channel_type", "category", "provider", "config", "capabilities", "creates_rooms", "enabled"]

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
        fields = ["webhook"]
        if request.user.is_superuser:
            fields.append("configured_secrets")
        return fields

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = list(super().get_fields(request, obj))
        if not request.user.is_superuser:
            # Which secrets are set is itself configuration: superusers only.
            fields = [f for f in fields if f not in ("new_secrets", "configured_secrets")]
        return fields

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
