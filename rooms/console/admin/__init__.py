"""The operator console: the core models' admin pages, the room list and page, channels, the outbox, audit."""

from rooms.console.admin import audit, channels, core, deliveries, inbox_models, room_console

__all__ = ["audit", "channels", "core", "deliveries", "inbox_models", "room_console"]
