"""The Telnyx adapter (provider ``telnyx``): SMS/MMS and RCS over Telnyx's v2 API.

Inbound: every webhook Telnyx sends (``message.received`` and the status
events, which go to the message's ``webhook_url`` or else the messaging
profile's URL) is accepted on both of the channel's URLs, verified by its
Ed25519 signature (``signature.py``) and read by ``events.py``.

Outbound: ``POST {api_base}/v2/messages`` (SMS/MMS) or ``POST
{api_base}/v2/messages/rcs`` with ``Authorization: Bearer <api_key>`` and an
``Idempotency-Key`` that is the same on every attempt of one delivery, so a
retry after a lost answer is not a second message where Telnyx honours the key.
``webhook_url`` is always our status URL, so status events come back to us
whatever the profile says.

RCS channels first ask Telnyx whether the recipient's device takes RCS (``GET
/v2/messaging/rcs/capabilities/{agent_id}/{number}``, cached for an hour, as
Telnyx advises: the check can take seconds). No RCS: with ``fallback`` on (the
default) the delivery goes as SMS/MMS from the same channel, ``sent_as`` "sms";
off, it fails for that recipient. RCS or unknown (the check failed): it goes as
RCS, with Telnyx's own ``sms_fallback``/``mms_fallback`` attached when
``fallback`` is on, so a device that turns out not to take it still gets the
text; status events then say which it was (``payload.type``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers.base import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    configuration_failure,
    delivery_idempotency_key,
    inbound_json_response,
)
from channels_app.providers.telnyx import events, rcs
from channels_app.providers.telnyx.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rooms.content.kinds import content_text
from rooms.enums import ChannelType, DeliveryStatus
from rooms.inbound import InboundResult
from rooms.inbound.transcoding import SMS_ELLIPSIS, truncate
from rooms.models import Channel, Delivery

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.telnyx.com"
# Telnyx's advice: capability checks are slow, cache them. A device that gains RCS is seen within the hour.
RCS_CAPABILITY_TTL_SECONDS = 3600
SMS_MAX_LENGTH = 1600

# Telnyx error codes that say "never, for this recipient" whatever the HTTP status:
# STOP (40300, a 409), an invalid or non-E.164 "to" (40310, 10002, 10016), a
# number that cannot take messages (40001, 40012) or a destination the profile
# does not allow (40309). Retrying cannot help; the vendor is healthy.
PERMANENT_RECIPIENT_CODES = frozenset({"40300", "40310", "10002", "10016", "40001", "40012", "40309"})
# Codes that say "not now": throttled (10011, 40011), Telnyx's own trouble (10007, 10008).
TRANSIENT_CODES = frozenset({"10011", "40011", "10007", "10008"})


def _flag(value: Any, default: bool) -> bool:
    """A config switch given as JSON true/false or as text ("false", "0", "off")."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("0", "false", "no", "off")


def _config_error(message: str) -> SendResult:
    return configuration_failure(message, error_code="configuration")


class TelnyxProvider:
    """Telnyx messaging (SMS, MMS, RCS with SMS fallback), one adapter for both channel types."""

    name = "telnyx"
    spec = ProviderSpec(
        label="Telnyx (SMS, MMS, RCS)",
        channel_types=frozenset({ChannelType.SMS, ChannelType.RCS}),
        config_fields=(
            ConfigField("from", "From number", help="E.164 sending number (the SMS fallback's sender on an RCS channel)"),
            ConfigField(
                "messaging_profile_id",
                "Messaging profile id",
                help="Telnyx messaging profile; sends from its number pool without 'from'. Required for RCS",
            ),
            ConfigField(
                "public_key",
                "Webhook public key",
                required=True,
                help="Base64 Ed25519 public key from the Telnyx portal (Keys & Credentials); verifies every webhook",
            ),
            ConfigField("agent_id", "RCS agent id", help="RCS channels: the Telnyx RCS agent that sends"),
            ConfigField("fallback", "SMS fallback", help="RCS channels: send as SMS when the device has no RCS (default true)"),
            ConfigField("api_base", "API base URL", help=f"Default {DEFAULT_API_BASE}"),
        ),
        secrets=("api_key",),
        required_secrets=("api_key",),
        webhook="signature",
        status_callbacks=True,
        one_of=(("from", "messaging_profile_id"),),
    )

    # --- webhooks -------------------------------------------------------------------------

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        """Telnyx's Ed25519 signature over ``{timestamp}|{body}``, stamped within five minutes of our clock."""
        return verify_signature(
            request.body,
            public_key=channel.config.get("public_key"),
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
        )

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        """A received message, or a status event (a profile URL sends every event here); others acknowledged."""
        event = events.parse_event(request)
        parsed = _read_event(channel, event)
        if parsed is None:
            # Telnyx retries anything but a 2xx: an event we do not act on is acknowledged.
            return InboundParse([], response=JsonResponse({"ignored": event.event_type[:100]}))
        return parsed

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate] | InboundParse:
        """Status events; a received message that reached this URL is read too, to be stored rather than lost.

        A messaging profile whose webhook URL is our status URL sends inbound
        messages here, and Telnyx would not send them again after our 200.
        """
        return _read_event(channel, events.parse_event(request)) or []

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    # --- sending --------------------------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        """Send one delivery as SMS/MMS, or as RCS (falling back to SMS) on an RCS channel."""
        api_key = channel.get_secret("api_key")
        if not api_key:
            return _config_error("channel has no 'api_key' secret")
        if not delivery.recipient:
            return SendResult(False, error="delivery has no recipient", retryable=False, counts_against_breaker=False)
        if channel.channel_type == ChannelType.RCS:
            return self._send_rcs(channel, delivery, api_key)
        return self._send_sms(channel, delivery, api_key, delivery.content)

    def _send_sms(
        self, channel: Channel, delivery: Delivery, api_key: str, content: dict[str, Any], sent_as: str = ""
    ) -> SendResult:
        config = channel.config
        sender, profile = config.get("from"), config.get("messaging_profile_id")
        if not sender and not profile:
            return _config_error("channel needs 'from' or 'messaging_profile_id'")
        text, media_urls = sms_parts(content)
        if not text and not media_urls:
            return SendResult(False, error="nothing to send as SMS", retryable=False, counts_against_breaker=False)
        body: dict[str, Any] = {"to": delivery.recipient}
        if sender:
            body["from"] = sender
        if profile:
            body["messaging_profile_id"] = profile
        if text:
            body["text"] = text
        if media_urls:
            body["media_urls"] = media_urls
        body["webhook_url"] = status_url(channel)
        return self._post(channel, api_key, "/v2/messages", body, delivery_idempotency_key(delivery), sent_as)

    def _send_rcs(self, channel: Channel, delivery: Delivery, api_key: str) -> SendResult:
        config = channel.config
        agent_id, profile = config.get("agent_id"), config.get("messaging_profile_id")
        if not agent_id or not profile:
            return _config_error("an RCS channel needs 'agent_id' and 'messaging_profile_id'")
        fallback = _flag(config.get("fallback"), True)
        features = self._rcs_features(channel, api_key, str(agent_id), delivery.recipient)
        if features is not None and not features:
            if not fallback:
                return SendResult(
                    False,
                    error="the recipient's device cannot receive RCS and SMS fallback is off",
                    retryable=False,
                    counts_against_breaker=False,
                    error_code="rcs_unavailable",
                    sent_as="rcs",
                )
            return self._send_sms(channel, delivery, api_key, delivery.content, sent_as="sms")
        body: dict[str, Any] = {
            "agent_id": agent_id,
            "messaging_profile_id": profile,
            "to": delivery.recipient,
            "type": "RCS",
            "agent_message": rcs.agent_message(delivery.content, features),
            "webhook_url": status_url(channel),
        }
        if fallback:
            text, media_urls = sms_parts(delivery.content)
            leg: dict[str, Any] = {"from": config["from"]} if config.get("from") else {}
            if media_urls:
                body["mms_fallback"] = {**leg, **({"text": text} if text else {}), "media_urls": media_urls}
            elif text:
                body["sms_fallback"] = {**leg, "text": text}
        return self._post(channel, api_key, "/v2/messages/rcs", body, delivery_idempotency_key(delivery), "rcs")

    def _rcs_features(self, channel: Channel, api_key: str, agent_id: str, number: str) -> list[str] | None:
        """The device's RCS features (empty: no RCS), or None when Telnyx could not say."""
        key = f"telnyx:rcs-features:{api_base(channel)}:{agent_id}:{number}"
        cached = cache.get(key)
        if cached is not None:
            return list(cached)
        url = f"{api_base(channel)}/v2/messaging/rcs/capabilities/{quote(agent_id, safe='')}/{quote(number, safe='+')}"
        try:
            response = http_client().get(url, headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            logger.info("telnyx %s: RCS capability check failed (%s); sending RCS with fallback", channel.id, type(exc).__name__)
            return None
        if response.status_code != 200:
            logger.info("telnyx %s: RCS capability check answered %s", channel.id, response.status_code)
            return None
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            return None
        if not isinstance(data, dict):
            return None
        raw = data.get("features")
        # Telnyx: "If the destination is not RCS-enabled we return empty or null features".
        features = [f for f in raw if isinstance(f, str)] if isinstance(raw, list) else []
        cache.set(key, features, RCS_CAPABILITY_TTL_SECONDS)
        return features

    def _post(
        self, channel: Channel, api_key: str, path: str, body: dict[str, Any], idempotency_key: str, sent_as: str
    ) -> SendResult:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": idempotency_key,
        }
        # Sorted and compact: a retry sends the same bytes, which Telnyx's idempotency check compares.
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        try:
            response = http_client().post(api_base(channel) + path, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            result = failure_for_exception(exc)
            result.sent_as = sent_as
            return result
        if not 200 <= response.status_code < 300:
            result = failure_for_telnyx_response(response)
            result.sent_as = sent_as
            return result
        return accepted(channel, response, sent_as)


def _read_event(channel: Channel, event: events.TelnyxEvent) -> InboundParse | None:
    """A received message or a status event as what the view stores; None for an event we do not act on."""
    if event.event_type == events.MESSAGE_RECEIVED:
        return InboundParse([events.inbound_message(channel, event)])
    if event.event_type in events.STATUS_EVENTS:
        update = events.status_update(channel, event)
        return InboundParse([], status_updates=[update] if update else [])
    return None


def api_base(channel: Channel) -> str:
    return str(channel.config.get("api_base") or DEFAULT_API_BASE).rstrip("/")


def status_url(channel: Channel) -> str:
    """Where Telnyx sends this channel's message.sent/message.finalized events."""
    return settings.PUBLIC_BASE_URL + reverse("webhook-status", args=[channel.id])


def sms_parts(content: dict[str, Any]) -> tuple[str, list[str]]:
    """``(text, media_urls)`` for an SMS/MMS of ``content``: media become ``media_urls``, the rest its text, cut to SMS length."""
    kind = content.get("type")
    media_urls: list[str] = []
    if kind == "media":
        media_urls = [content["url"]]
        text = content.get("caption") or ""
    elif kind == "composite":
        parts = content.get("parts") or []
        media_urls = [p["url"] for p in parts if p.get("type") == "media" and p.get("url")]
        text = "\n".join(content_text(p) for p in parts if p.get("type") != "media")
    elif kind == "text":
        text = content.get("body", "")
    elif kind == "rich":
        text = rcs.rich_plain_text(content)
    else:
        text = content_text(content)
    return truncate(text.strip(), SMS_MAX_LENGTH, SMS_ELLIPSIS), media_urls


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def failure_for_telnyx_response(response: httpx.Response) -> SendResult:
    """A refused send: Telnyx's ``errors[0].code`` decides where it knows better than the HTTP status."""
    reply = _json_or_none(response)
    text, code = events.first_error(reply.get("errors") if isinstance(reply, dict) else None)
    result = failure_for_response(response, detail=f"Telnyx {text}" if code else None)
    result.error_code = code
    if code in PERMANENT_RECIPIENT_CODES:
        result.retryable = False
        result.counts_against_breaker = False
        result.retry_after = None
    elif code in TRANSIENT_CODES:
        result.retryable = True
        result.counts_against_breaker = True
    return result


def accepted(channel: Channel, response: httpx.Response, sent_as: str) -> SendResult:
    """Telnyx took the message: its id (``data.id``) and the recipient's first status (``data.to[0].status``)."""
    reply = _json_or_none(response)
    data = reply.get("data") if isinstance(reply, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        # Taken, but we cannot match its status events: record the send, say why.
        logger.warning("telnyx %s: a %s answer without data.id", channel.id, response.status_code)
        return SendResult(True, status=DeliveryStatus.QUEUED, sent_as=sent_as)
    recipients = data.get("to")
    first = recipients[0] if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict) else {}
    status = events.VENDOR_STATUSES.get(first.get("status")) if isinstance(first.get("status"), str) else None
    if status not in (DeliveryStatus.QUEUED, DeliveryStatus.SENT):
        status = DeliveryStatus.QUEUED
    if channel.channel_type == ChannelType.RCS:
        sent_as = events.sent_as_of(channel, data.get("type")) or sent_as
    return SendResult(True, provider_message_id=data["id"], status=status, sent_as=sent_as)
