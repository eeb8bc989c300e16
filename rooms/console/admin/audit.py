"""The audit trail of console actions: read-only, for everyone who may read the console."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from rooms.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "username", "action", "room", "target"]
    list_filter = ["action", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["username", "action", "room__id", "target"]
    list_select_related = ["room"]
    readonly_fields = ["created_at", "user", "username", "action", "room", "target", "data"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
