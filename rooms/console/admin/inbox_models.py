"""Admin pages of what the inbox is configured with: labels, saved replies, operators' presence."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from rooms.models import CannedResponse, Label, OperatorPresence


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ["name", "color"]
    search_fields = ["name"]


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ["shortcut", "text", "created_by", "updated_at"]
    search_fields = ["shortcut", "text"]
    readonly_fields = ["created_by", "updated_at"]

    def save_model(self, request: HttpRequest, obj: CannedResponse, form: Any, change: bool) -> None:
        if obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(OperatorPresence)
class OperatorPresenceAdmin(admin.ModelAdmin):
    list_display = ["user", "status", "away", "last_seen_at", "last_assigned_at"]
    readonly_fields = ["user", "sockets", "last_seen_at", "last_assigned_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a row appears when an operator first opens the inbox
