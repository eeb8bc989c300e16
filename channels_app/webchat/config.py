"""A web-chat channel's own settings in its ``config``: what the chat page tells a visitor as the session starts.

- ``welcome_message``: a greeting shown at the top of the conversation (not
  stored in the room: nobody said it, and it would start the room, which a
  page load must not).
- ``reply_time``: when to expect an answer, in the visitor's words
  ("We usually reply within a few minutes").

Checked when the channel is saved (``manage.py add_channel``, the channel
admin) through the core's per-channel-type checks, as the voice app does for a
voice channel's ``config["voice"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rooms.content.storable import storable_text
from rooms.enums import ChannelType
from rooms.models import Channel

# Key -> (what it is, the longest value allowed).
WEBCHAT_CONFIG_KEYS: dict[str, tuple[str, int]] = {
    "welcome_message": ("the greeting the chat page shows as a session starts", 1000),
    "reply_time": ("when a visitor may expect an answer, e.g. 'We usually reply within a few minutes'", 200),
}
# The offline agent (agents.providers.scripted) answers without any AI model: the page says so once.
SCRIPTED_PROVIDER = "scripted"


def webchat_settings_errors(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What is wrong with a web-chat channel's page settings, as ``(key, message)`` pairs; empty when they work."""
    config = config or {}
    problems = []
    for key, (_, longest) in WEBCHAT_CONFIG_KEYS.items():
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not storable_text(value):
            problems.append((key, f"{key} must be text"))
        elif len(value) > longest:
            problems.append((key, f"{key} must be at most {longest} characters"))
    return problems


@dataclass(frozen=True)
class WebchatPageInfo:
    """What the chat page shows of its channel: the greeting, the reply time, and whether a demo agent answers."""

    welcome_message: str = ""
    reply_time: str = ""
    demo_agent: bool = False


def webchat_page_info(channel: Channel) -> WebchatPageInfo:
    """The page settings of a web-chat ``channel`` (nothing for another kind of channel)."""
    if channel.channel_type != ChannelType.WEBSOCKET:
        return WebchatPageInfo()
    config = channel.config or {}
    # Only what a saved channel would have passed; a value set around the check is not shown.
    shown = {key: config.get(key) for key in WEBCHAT_CONFIG_KEYS if not any(k == key for k, _ in webchat_settings_errors(config))}
    attached = [a for a in config.get("attach_on_create", []) if isinstance(a, str)]
    demo = bool(attached) and (
        Channel.objects.filter(pk__in=attached, channel_type=ChannelType.AI, enabled=True, provider=SCRIPTED_PROVIDER).exists()
    )
    return WebchatPageInfo(
        welcome_message=(shown.get("welcome_message") or "").strip(),
        reply_time=(shown.get("reply_time") or "").strip(),
        demo_agent=demo,
    )
