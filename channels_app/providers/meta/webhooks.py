"""What WhatsApp Cloud API and Messenger webhooks share: the verification handshake, the signature, the envelope.

Subscribing a URL, Meta sends ``GET ?hub.mode=subscribe&hub.verify_token=…
&hub.challenge=…``; we answer the challenge, as plain text, only when the
token is the channel's ``verify_token`` secret (Graph API "Getting started
with webhooks"). Every POST is signed (``signature.py``) and is an envelope
``{"object": "whatsapp_business_account" | "page", "entry": [...]}``.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.http import HttpRequest, HttpResponse

from channels_app.providers.meta.signature import SIGNATURE_HEADER, verify_signature
from rooms.errors import InvalidInput
from rooms.infra.http import error_response, json_object_body
from rooms.models import Channel

# Meta's challenges are numbers; anything long or odd is not Meta's and is not echoed back.
_MAX_CHALLENGE = 256


def verification_handshake(channel: Channel, request: HttpRequest) -> HttpResponse:
    """Answer Meta's subscription check: 200 with ``hub.challenge`` as the body, or 403."""
    mode = request.GET.get("hub.mode")
    token = request.GET.get("hub.verify_token") or ""
    challenge = request.GET.get("hub.challenge") or ""
    expected = channel.get_secret("verify_token") or ""
    if mode != "subscribe" or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return error_response(403, "verification_failed", "hub.mode or hub.verify_token does not match")
    if not challenge or len(challenge) > _MAX_CHALLENGE or not challenge.isprintable():
        return error_response(400, "invalid_challenge", "hub.challenge is missing or malformed")
    # text/plain: the challenge is echoed, never interpreted as a page.
    return HttpResponse(challenge, content_type="text/plain; charset=utf-8")


def verify_meta_request(channel: Channel, request: HttpRequest) -> bool:
    """The POST's ``X-Hub-Signature-256`` against the channel's ``app_secret``."""
    return verify_signature(
        request.body, app_secret=channel.get_secret("app_secret"), header=request.headers.get(SIGNATURE_HEADER)
    )


def envelope_entries(request: HttpRequest, expected_object: str) -> list[dict[str, Any]]:
    """The ``entry`` list of a Meta webhook body for ``expected_object``; InvalidInput (400, nothing stored) otherwise."""
    body = json_object_body(request)
    if body.get("object") != expected_object:
        raise InvalidInput(f"'object' must be '{expected_object}'", code="invalid_field")
    entries = body.get("entry")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInput("'entry' must be a list of objects", code="invalid_field")
    return entries


def str_field(data: dict[str, Any], name: str, where: str, *, required: bool = True) -> str:
    """A non-empty string field (ids, senders); InvalidInput naming where it was missing."""
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise InvalidInput(f"'{where}.{name}' is required", code="missing_field")
        return ""
    return value.strip()
