"""This app's rows in the admin: WhatsApp Personal clients' health and their pairing QR code.

Read-only: the supervisor writes these rows (``providers.neonize.sessions``);
the session itself is never shown.
"""

from __future__ import annotations

import segno
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator

from channels_app.models import WhatsAppPersonalSession, WhatsAppPersonalState
from channels_app.providers.neonize.sessions import HEARTBEAT_STALE_AFTER


def qr_svg(code: str) -> SafeString:
    """The pairing code as an inline SVG QR image, drawn here by segno (no image service sees the code)."""
    # segno writes only the module paths: the code is not in the markup, so nothing in it can inject HTML.
    return mark_safe(segno.make_qr(code, error="l").svg_inline(scale=5, border=4, dark="#000", light="#fff"))


@admin.register(WhatsAppPersonalSession)
class WhatsAppPersonalSessionAdmin(admin.ModelAdmin):
    list_display = ("channel", "health", "account", "restarts", "short_error", "heartbeat_at", "session_saved_at")
    list_select_related = ("channel",)
    fields = (
        "channel",
        "health",
        "pairing_qr",
        "account",
        "restarts",
        "next_attempt_at",
        "last_error",
        "last_error_at",
        "connected_at",
        "heartbeat_at",
        "session_saved_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WhatsAppPersonalSession | None = None) -> bool:
        return False  # the supervisor owns the row; deleting the channel deletes it

    def has_change_permission(self, request: HttpRequest, obj: WhatsAppPersonalSession | None = None) -> bool:
        return False

    @admin.display(description="State")
    def health(self, obj: WhatsAppPersonalSession) -> str:
        stale = obj.heartbeat_at is None or timezone.now() - obj.heartbeat_at > HEARTBEAT_STALE_AFTER
        if stale and obj.state not in (WhatsAppPersonalState.STOPPED, WhatsAppPersonalState.FAILED):
            # The row says what a supervisor last knew; none has spoken for a while.
            return f"{obj.get_state_display()} (no supervisor running: last heard {obj.heartbeat_at or 'never'})"
        return obj.get_state_display()

    @admin.display(description="Last error")
    def short_error(self, obj: WhatsAppPersonalSession) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="Pair this channel")
    def pairing_qr(self, obj: WhatsAppPersonalSession) -> SafeString | str:
        if obj.state != WhatsAppPersonalState.PAIRING or not obj.qr_code:
            return "No QR code: the channel is not waiting to be paired."
        return format_html(
            '<div class="wa-qr">{}</div><p>On the phone: WhatsApp › Linked devices › Link a device, then scan. '
            "WhatsApp renews the code every 20 seconds or so: reload this page for the current one "
            "(shown at {}).</p>",
            qr_svg(obj.qr_code),
            obj.qr_updated_at,
        )
