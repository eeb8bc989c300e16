"""Template filters of the operators' inbox: channel badges and short times."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()

# Short, readable badges: the list has room for a few letters, not a name.
_BADGES = {
    "sms": "SMS",
    "rcs": "RCS",
    "whatsapp": "WA",
    "whatsapp_personal": "WA",
    "messenger": "FB",
    "telegram": "TG",
    "teams": "MS",
    "email": "@",
    "websocket": "Web",
    "voice": "Call",
    "realtime_voice": "Call",
    "webhook": "API",
    "api": "API",
}


@register.filter
def channel_badge(channel_type: str) -> str:
    """A few letters for a channel type (``sms`` → "SMS", ``whatsapp`` → "WA")."""
    return _BADGES.get(channel_type or "", (channel_type or "?")[:3].upper())


@register.filter
def inbox_when(moment: datetime | None) -> str:
    """A time as an inbox shows it: "14:05" today, "Mon" this week, "Nov 3" before, "2025-11-03" in another year."""
    if moment is None:
        return ""
    local, now = timezone.localtime(moment), timezone.localtime()
    if local.date() == now.date():
        return f"{local:%H:%M}"
    if (now.date() - local.date()).days < 7:
        return f"{local:%a}"
    if local.year == now.year:
        return f"{local:%b} {local.day}"
    return f"{local:%Y-%m-%d}"
