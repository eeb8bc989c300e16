"""Bearer tokens: integrators' API tokens and web-chat session tokens.

API tokens are random; only their SHA-256 is stored. Chat tokens are signed
(not stored) and bind one participant to one room until they expire.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.utils import timezone

from rooms.models import APIToken

_CHAT_SALT = "roomkit.chat-session"


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, username: str, name: str = "") -> tuple[APIToken, str]:
    """Create (the user if needed and) a token; the raw value is returned once."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        # An integrator, not a person: no password login at all.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    raw = "rk_" + secrets.token_urlsafe(32)
    token = APIToken.objects.create(user=user, name=name, key_hash=_hash(raw), prefix=raw[:10])
    return token, raw


def api_token_user(raw: str):
    """The active user behind a raw API token, or None."""
    if not raw or len(raw) > 200:
        return None
    token = APIToken.objects.select_related("user").filter(key_hash=_hash(raw), revoked=False).first()
    if token is None or not token.user.is_active:
        return None
    # Touch last_used at most once a minute: a write per request would serialise reads.
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        APIToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


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
