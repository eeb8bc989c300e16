"""Integrators' API tokens: random, shown once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.utils import timezone

from rooms.models import APIToken


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
