"""Admin pages of the core models other than rooms and channels: events, bindings, people, outbox."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from rooms.models import (
    APIToken,
    ChannelBinding,
    Delivery,
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


@admin.register(ChannelBinding)
class ChannelBindingAdmin(admin.ModelAdmin):
    list_display = ["room", "channel", "address", "category", "access", "muted"]
    list_filter = ["category", "access", "muted"]
    list_select_related = ["room", "channel"]
    raw_id_fields = ["room", "participant"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # attach, mute and access go through rooms.services (the room page's actions)

    def has_change_permission(self, request: HttpRequest, obj: ChannelBinding | None = None) -> bool:
        return False


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
    list_select_related = ["room"]
    raw_id_fields = ["room", "event"]


@admin.register(Observation)
class ObservationAdmin(admin.ModelAdmin):
    list_display = ["kind", "room", "summary", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["room"]
    raw_id_fields = ["room", "event"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event", "channel", "recipient", "status", "attempts", "next_attempt_at", "updated_at"]
    list_filter = ["status", "channel"]
    list_select_related = ["event", "channel"]
    raw_id_fields = ["event", "binding"]
    readonly_fields = ["provider_message_id", "last_error", "attempts", "sent_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # planned by the inbound path; retried from the room page

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["user", "name", "prefix", "revoked", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created with `manage.py create_api_token`, shown once
