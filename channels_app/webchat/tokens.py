"""Web-chat session tokens: signed (not stored), binding one participant to one room until they expire."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

_CHAT_SALT = "roomkit.chat-session"


@dataclass(frozen=True)
class ChatClaims:
    """What a chat token vouches for: one participant in one room, on one channel.

    The room and participant may not exist yet: a session reserves their ids
    and the first message creates them (``channels_app.webchat.sessions``).
    ``display_name`` is the name the visitor gave when the session started.
    """

    room_id: str
    participant_id: str
    display_name: str = ""
    channel_id: str = ""


def chat_token_issue(*, room_id: str, participant_id: str, display_name: str = "", channel_id: str = "") -> str:
    data = {"r": room_id, "p": participant_id}
    if display_name:
        data["n"] = display_name
    if channel_id:
        data["c"] = channel_id
    return signing.dumps(data, salt=_CHAT_SALT, compress=False)


def chat_token_verify(token: str) -> ChatClaims | None:
    """Claims of a valid, unexpired chat token; None otherwise."""
    if not token or len(token) > 1000:
        return None
    try:
        data = signing.loads(token, salt=_CHAT_SALT, max_age=settings.ROOMKIT_CHAT_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("r"), str) or not isinstance(data.get("p"), str):
        return None
    name, channel = data.get("n", ""), data.get("c", "")
    return ChatClaims(
        room_id=data["r"],
        participant_id=data["p"],
        display_name=name if isinstance(name, str) else "",
        # Tokens issued before sessions named their channel are the web chat's.
        channel_id=(channel if isinstance(channel, str) else "") or settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
    )
