"""The operator console: the core models' admin pages, the room list and page, channels, audit."""

from rooms.console.admin import audit, channels, core, room_console

__all__ = ["audit", "channels", "core", "room_console"]
