"""Per-channel webhook tokens, for vendors that cannot sign their webhooks.

Such a vendor (VoiceMeUp) is given a webhook URL that carries a secret:
``https://<PUBLIC_BASE_URL>/webhooks/<channel_id>/?token=<webhook_token>``.
The token is the channel's secret ``webhook_token``, made when the channel is
configured (``webhook_token_ensure``), never at request time: a request that
finds no token is refused like one with a wrong token. It is compared in
constant time, and never logged or echoed by this code (the URL itself is the
operator's to copy from the admin, through ``webhook_url_with_token``).

A token in a URL is weaker than a signature: whoever sees the URL (the vendor's
portal, a proxy's access log) can post to it. Keep access logs free of query
strings and rotate the token (``webhook_token_ensure(..., rotate=True)``) when
the URL may have leaked.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse

from rooms.errors import InvalidInput, NotFound
from rooms.models import Channel

WEBHOOK_TOKEN_SECRET = "webhook_token"
TOKEN_PARAM = "token"
# 32 random bytes, URL-safe base64: 43 characters.
_TOKEN_BYTES = 32


def webhook_token_generate() -> str:
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def webhook_token_ensure(*, channel_id: str, rotate: bool = False) -> str:
    """Give the channel a ``webhook_token`` if it has none (or a new one with ``rotate``); return it.

    Call it when the channel is configured (``add_channel``, the admin's
    channel form) for a provider whose ``spec.webhook`` is ``"token"``. The
    row is locked, so two concurrent configurations agree on one token.
    """
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            raise NotFound(f"unknown channel '{channel_id}'", code="unknown_channel")
        token = channel.get_secret(WEBHOOK_TOKEN_SECRET)
        if token and not rotate:
            return token
        token = webhook_token_generate()
        channel.set_secrets({WEBHOOK_TOKEN_SECRET: token})
        # save() (not a queryset update) so the channel cache hears of it.
        channel.save(update_fields=["secrets_encrypted", "updated_at"])
    return token


def webhook_token_verify(channel: Channel, request: HttpRequest) -> bool:
    """True when the request's ``?token=`` is the channel's ``webhook_token``."""
    expected = channel.get_secret(WEBHOOK_TOKEN_SECRET)
    given = request.GET.get(TOKEN_PARAM)
    if not expected or not given:
        return False
    # compare_digest refuses non-ASCII str; bytes compare in constant time either way.
    return hmac.compare_digest(expected.encode(), given.encode())


def webhook_url_with_token(channel: Channel, *, status: bool = False) -> str:
    """The full URL the vendor must call for this channel (inbound, or the status URL), token included.

    For the admin to show the operator. Raises ``InvalidInput`` when the
    channel has no token yet (configure it first: ``webhook_token_ensure``).
    """
    token = channel.get_secret(WEBHOOK_TOKEN_SECRET)
    if not token:
        raise InvalidInput(f"channel '{channel.id}' has no {WEBHOOK_TOKEN_SECRET} yet", code="missing_webhook_token")
    path = reverse("webhook-status" if status else "webhook", args=[channel.id])
    return f"{settings.PUBLIC_BASE_URL}{path}?{urlencode({TOKEN_PARAM: token})}"
