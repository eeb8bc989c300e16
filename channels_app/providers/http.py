"""The generic HTTP webhook channel (provider ``http``).

Inbound: ``POST /webhooks/<channel_id>/`` with JSON ``{"id", "sender", "text",
"media"?}`` signed ``X-Signature-256: sha256=<hmac>`` with the channel secret
``signing_secret``. Outbound: ``POST <config url>`` with JSON ``{"event_id",
"room_id", "seq", "recipient", "text", "content"}``, signed the same way.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    inbound_json_response,
)
from channels_app.signing import SIGNATURE_HEADER, sign, verify
from rooms.content.kinds import content_text
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage, InboundResult
from rooms.infra.http import json_object_body
from rooms.models import Channel, Delivery

_STATUSES = {s.value for s in DeliveryStatus}

# One parser for every JSON edge (webhooks and the REST API); kept under its old name.
json_body = json_object_body


def _str_field(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"'{name}' is required", code="missing_field")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"'{name}' must be a string", code="invalid_field")
    value = str(value)
    if required and not value:
        raise InvalidInput(f"'{name}' must not be empty", code="invalid_field")
    return value


def content_from_payload(text: str | None, media: Any) -> dict[str, Any]:
    """Typed content from a text and an optional media list."""
    if media is not None and not isinstance(media, list):
        raise InvalidInput("'media' must be a list", code="invalid_field")
    items = []
    for m in media or []:
        if not isinstance(m, dict) or not isinstance(m.get("url"), str):
            raise InvalidInput("each media item needs a 'url' string", code="invalid_field")
        items.append({"type": "media", "url": m["url"], "mime_type": str(m.get("mime_type") or "application/octet-stream")})
    if not items:
        if not text:
            raise InvalidInput("'text' or 'media' is required", code="missing_field")
        return {"type": "text", "body": text}
    if len(items) == 1:
        return {**items[0], "caption": text} if text else items[0]
    parts = ([{"type": "text", "body": text}] if text else []) + items
    return {"type": "composite", "parts": parts}


class HTTPWebhookProvider:
    name = "http"
    # Any transport type: the other side is your own service, speaking this JSON.
    spec = ProviderSpec(
        label="Generic HTTP (your own service)",
        channel_types=frozenset(t for t in ChannelType.values if t not in (ChannelType.AI, ChannelType.CONSOLE)),
        config_fields=(
            ConfigField("url", "Send URL", help="Where outbound messages are POSTed as JSON; empty: inbound only"),
            ConfigField("timeout_seconds", "Timeout (seconds)", help="Per send; default 10"),
        ),
        secrets=("signing_secret",),
        required_secrets=("signing_secret",),
    )

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return verify(request.body, channel.get_secret("signing_secret"), request.headers.get(SIGNATURE_HEADER))

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        data = json_body(request)
        text = _str_field(data, "text")
        message = InboundMessage(
            channel_id=channel.id,
            sender=_str_field(data, "sender", required=True) or "",
            content=content_from_payload(text, data.get("media")),
            # An empty id is no id: as a dedup key it would match every other empty one.
            provider_message_id=_str_field(data, "id") or None,
            display_name=_str_field(data, "display_name"),
        )
        return InboundParse([message])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        data = json_body(request)
        pmid = _str_field(data, "provider_message_id", required=True) or ""
        status = _str_field(data, "status", required=True)
        if status not in _STATUSES:
            raise InvalidInput(f"unknown status '{status}'", code="invalid_field")
        return [StatusUpdate(pmid, status, error=_str_field(data, "error") or "", raw=data)]

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        url = channel.config.get("url")
        if not url:
            # Our configuration, not the vendor's health: fail, do not count toward the breaker.
            return SendResult(False, error="channel has no 'url' configured", retryable=False, counts_against_breaker=False)
        event = delivery.event
        body = json.dumps(
            {
                "event_id": event.id,
                "room_id": event.room_id,
                "seq": event.seq,
                "recipient": delivery.recipient,
                "text": content_text(delivery.content),
                "content": delivery.content,
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"{event.id}:{delivery.id}"}
        secret = channel.get_secret("signing_secret")
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        try:
            response = http_client().post(
                url, content=body, headers=headers, timeout=float(channel.config.get("timeout_seconds", 10))
            )
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if not 200 <= response.status_code < 300:
            return failure_for_response(response)
        pmid = ""
        try:
            reply = response.json()
            if isinstance(reply, dict) and isinstance(reply.get("id"), (str, int)):
                pmid = str(reply["id"])
        except ValueError:
            pass
        return SendResult(True, provider_message_id=pmid or f"{event.id}:{delivery.id}")
