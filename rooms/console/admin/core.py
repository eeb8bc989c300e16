"""Admin pages of the core models other than rooms, channels and deliveries: events, bindings, people, tokens."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from rooms.addresses import normalize_channel_address
from rooms.console import actions as console
from rooms.errors import InvalidInput, RoomKitError
from rooms.models import (
    APIToken,
    ChannelBinding,
    Identity,
    IdentityAddress,
    Observation,
    Participant,
    RoomEvent,
    Task,
)


@admin.register(RoomEvent)
class RoomEventAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "type", "direction", "source_channel", "status", "created_at"]
    list_filter = ["type", "status", "direction"]
    search_fields = ["room__id", "provider_message_id", "idempotency_key"]
    list_select_related = ["room", "source_channel"]
    raw_id_fields = ["room", "source_participant", "parent_event"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events enter only through the inbound path

    def has_change_permission(self, request: HttpRequest, obj: RoomEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RoomEvent | None = None) -> bool:
        return False  # a room's seq is gapless by contract: events are never deleted


@admin.register(ChannelBinding)
class ChannelBindingAdmin(admin.ModelAdmin):
    list_display = ["room", "channel", "address", "category", "access", "muted"]
    list_filter = ["category", "access", "muted"]
    list_select_related = ["room", "channel"]
    raw_id_fields = ["room", "participant"]
    actions = ["detach_bindings"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # attach, mute and access go through rooms.services (the room page's actions)

    def has_change_permission(self, request: HttpRequest, obj: ChannelBinding | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ChannelBinding | None = None) -> bool:
        return False  # detached through rooms.services.channel_detach (its hook and system event): the action below

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not console.can_operate(request.user):
            actions.pop("detach_bindings", None)
        return actions

    @admin.action(description="Detach the selected bindings from their rooms")
    def detach_bindings(self, request: HttpRequest, queryset: QuerySet[ChannelBinding]) -> None:
        if not console.can_operate(request.user):
            raise PermissionDenied
        detached = 0
        for binding_id, room_id in queryset.values_list("pk", "room_id"):
            try:
                console.console_room_action(
                    user=request.user, room_id=room_id, action="detach", params={"binding": str(binding_id)}
                )
            except RoomKitError as exc:
                self.message_user(request, f"binding {binding_id}: {exc.message}", messages.WARNING)
            else:
                detached += 1
        self.message_user(request, f"{detached} binding{'' if detached == 1 else 's'} detached.")


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["display_name", "room", "channel", "address", "role", "identification"]
    list_select_related = ["room", "channel"]
    search_fields = ["display_name", "address"]
    raw_id_fields = ["room", "identity"]
    # Where a participant speaks is the bindings' business (rooms.services).
    readonly_fields = ["room", "channel", "address"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # participants join through the inbound path and channel_attach

    def has_delete_permission(self, request: HttpRequest, obj: Participant | None = None) -> bool:
        return False  # their events would lose who said them


class IdentityAddressForm(forms.ModelForm):
    class Meta:
        model = IdentityAddress
        fields = ["channel_type", "address"]

    def clean(self) -> dict:
        data = super().clean()
        channel_type, address = data.get("channel_type"), data.get("address")
        if channel_type and address:
            # Stored as the inbound path will look it up: E.164 on phone-number
            # channel types (without a channel, no default region applies).
            try:
                data["address"] = normalize_channel_address(channel_type, {}, address.strip())
            except InvalidInput as exc:
                self.add_error("address", exc.message)
        return data


class IdentityAddressInline(admin.TabularInline):
    model = IdentityAddress
    form = IdentityAddressForm
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
    list_select_related = ["room"]
    raw_id_fields = ["room", "event"]


@admin.register(Observation)
class ObservationAdmin(admin.ModelAdmin):
    list_display = ["kind", "room", "summary", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["room"]
    raw_id_fields = ["room", "event"]


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["user", "name", "prefix", "revoked", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created with `manage.py create_api_token`, shown once
