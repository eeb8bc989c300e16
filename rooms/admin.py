"""Operator console for the core models (the full console grows in its own issue)."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin

from rooms.models import (
    APIToken,
    Channel,
    ChannelBinding,
    Delivery,
    Identity,
    IdentityAddress,
    Observation,
    Participant,
    Room,
    RoomEvent,
    Task,
)


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


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["id", "name", "channel_type", "category", "provider", "enabled"]
    list_filter = ["channel_type", "category", "enabled"]
    search_fields = ["id", "name"]
    readonly_fields = ["configured_secrets"]

    @admin.display(description="Secrets set")
    def configured_secrets(self, obj: Channel) -> str:
        return ", ".join(obj.secret_names) or "—"


class BindingInline(admin.TabularInline):
    model = ChannelBinding
    extra = 0
    fields = ["channel", "category", "address", "access", "muted", "visibility"]
    raw_id_fields = ["channel"]


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    fields = ["display_name", "channel", "address", "role", "identification", "last_read_seq"]
    readonly_fields = fields


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "status", "last_seq", "last_activity_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["id", "name"]
    readonly_fields = ["last_seq", "created_at", "updated_at", "paused_at", "closed_at"]
    inlines = [BindingInline, ParticipantInline]


@admin.register(RoomEvent)
class RoomEventAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "type", "direction", "source_channel", "status", "created_at"]
    list_filter = ["type", "status", "direction"]
    search_fields = ["room__id", "provider_message_id", "idempotency_key"]
    list_select_related = ["room", "source_channel"]
    raw_id_fields = ["room", "source_participant", "parent_event"]

    def has_add_permission(self, request) -> bool:
        return False  # events enter only through the inbound path

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ChannelBinding)
class ChannelBindingAdmin(admin.ModelAdmin):
    list_display = ["room", "channel", "address", "category", "access", "muted"]
    list_filter = ["category", "access", "muted"]
    list_select_related = ["room", "channel"]
    raw_id_fields = ["room", "participant"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["display_name", "room", "channel", "address", "role", "identification"]
    list_select_related = ["room", "channel"]
    search_fields = ["display_name", "address"]
    raw_id_fields = ["room", "identity"]


class IdentityAddressInline(admin.TabularInline):
    model = IdentityAddress
    extra = 1


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ["id", "display_name", "created_at"]
    search_fields = ["display_name", "addresses__address"]
    inlines = [IdentityAddressInline]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "room", "status", "assigned_to", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["room", "event"]


@admin.register(Observation)
class ObservationAdmin(admin.ModelAdmin):
    list_display = ["kind", "room", "summary", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["room", "event"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event", "channel", "recipient", "status", "attempts", "next_attempt_at", "updated_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["event", "channel"]
    raw_id_fields = ["event", "binding"]
    readonly_fields = ["provider_message_id", "last_error", "attempts", "sent_at"]


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["user", "name", "prefix", "revoked", "created_at", "last_used_at"]

    def has_add_permission(self, request) -> bool:
        return False  # created with `manage.py create_api_token`, shown once
