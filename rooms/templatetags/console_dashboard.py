"""The dashboard block of the admin index (``{% console_dashboard %}``)."""

from __future__ import annotations

from typing import Any

from django import template

from rooms.console.actions import can_view_console
from rooms.console.selectors import dashboard_stats

register = template.Library()

BAR_HEIGHT = 22


@register.inclusion_tag("admin/rooms/dashboard.html", takes_context=True)
def console_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not can_view_console(user) or not user.has_perm("rooms.view_room"):
        return {"show": False}
    stats = dashboard_stats()
    bars = [
        {"channel": v.channel_id, "count": v.count, "width": max(v.percent * 3, 1), "y": i * BAR_HEIGHT}
        for i, v in enumerate(stats.messages_24h)
    ]
    return {"show": True, "stats": stats, "bars": bars, "chart_height": max(len(bars), 1) * BAR_HEIGHT}


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as "1 h 4 min", "3 min 5 s" or "12 s"."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"
