"""Sinch SMS (XMS REST API), provider ``sinch``.

Outbound: ``POST {api_base}/xms/v1/{service_plan_id}/batches`` with ``Authorization:
Bearer <api_token>`` and a one-recipient batch (``mt_text``, or ``mt_media`` for
a media delivery), asking for per-recipient delivery reports at our status URL.

Inbound: Sinch posts MO messages (``mo_text``, ``mo_binary``, ``mo_media``) to
the service plan's callback URL (set it to ``/webhooks/<channel_id>/``) and
delivery reports to the batch's ``callback_url`` (``/webhooks/<channel_id>/status/``).
With HMAC callback authentication enabled on the service plan (Sinch does it
through the account manager), every callback carries::

    x-sinch-webhook-signature:           base64(HMAC-SHA256(webhook_secret, body "." nonce "." timestamp))
    x-sinch-webhook-signature-nonce:     a fresh random string per request
    x-sinch-webhook-signature-timestamp: seconds since the epoch
    x-sinch-webhook-signature-algorithm: HmacSHA256

as Sinch's SDKs check it (``validate_sinch_event_signature_with_nonce`` in
sinch-sdk-python, over the raw body). We also refuse a timestamp more than
``SIGNATURE_WINDOW_SECONDS`` from our clock and a nonce seen before within
that window, so a captured callback cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers import expiring_keys
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
from channels_app.providers.http import content_from_payload, json_body
from rooms.content.kinds import content_text
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage, InboundResult
from rooms.models import Channel, Delivery

DEFAULT_API_BASE = "https://us.sms.api.sinch.com"
SIGNATURE_HEADER = "x-sinch-webhook-signature"
NONCE_HEADER = "x-sinch-webhook-signature-nonce"
TIMESTAMP_HEADER = "x-sinch-webhook-signature-timestamp"
ALGORITHM_HEADER = "x-sinch-webhook-signature-algorithm"
ALGORITHM = "HmacSHA256"
# How far a callback's timestamp may be from our clock (either way: clocks drift).
SIGNATURE_WINDOW_SECONDS = 300
_MAX_NONCE_LENGTH = 256

MO_TYPES = frozenset({"mo_text", "mo_binary", "mo_media"})
_RECIPIENT_REPORTS = frozenset({"recipient_delivery_report_sms", "recipient_delivery_report_mms"})
_BATCH_REPORTS = frozenset({"delivery_report_sms", "delivery_report_mms"})

# Sinch's delivery-report statuses (Delivery reports, "Delivery report statuses")
# in ours. Queued and Dispatched are intermediate; the rest are final. "Unknown"
# means the SMSC took it but no receipt came: as far as anyone knows, sent.
_STATUS = {
    "queued": DeliveryStatus.QUEUED,
    "dispatched": DeliveryStatus.SENT,
    "unknown": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    # Reached the carrier, which could not deliver it.
    "failed": DeliveryStatus.UNDELIVERED,
    "expired": DeliveryStatus.UNDELIVERED,
    "deleted": DeliveryStatus.UNDELIVERED,
    # Never got past Sinch or the SMSC.
    "aborted": DeliveryStatus.FAILED,
    "rejected": DeliveryStatus.FAILED,
    "cancelled": DeliveryStatus.FAILED,
}
_FAILURES = frozenset({DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED})


def sinch_signature(body: bytes, nonce: str, timestamp: str, secret: str) -> str:
    """Sinch's callback signature: base64 HMAC-SHA256 of ``body.nonce.timestamp`` keyed with the webhook secret."""
    signed = body + b"." + nonce.encode() + b"." + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def _vendor_number(raw: Any) -> str:
    """Sinch writes international numbers without their ``+``; give it back so the inbound path reads E.164.

    Short codes (up to 8 digits) and alphanumeric senders stay as given.
    """
    text = str(raw or "").strip()
    if text.isdigit() and len(text) > 8:
        return "+" + text
    return text


def _str(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"'{name}' is required", code="missing_field")
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string", code="invalid_field")
    return value


class SinchSMSProvider:
    """Sinch's XMS REST API: batches out, MO messages and delivery reports in, HMAC-signed."""

    name = "sinch"
    spec = ProviderSpec(
        label="Sinch SMS",
        channel_types=frozenset({ChannelType.SMS}),
        config_fields=(
            ConfigField("service_plan_id", "Service plan ID", required=True),
            ConfigField("from", "From", required=True, help="Your Sinch number (E.164) or short code"),
            ConfigField(
                "api_base",
                "API base URL",
                help=f"Default {DEFAULT_API_BASE}; Sinch's other regions: https://eu.sms.api.sinch.com and others",
            ),
        ),
        secrets=("api_token", "webhook_secret"),
        required_secrets=("api_token", "webhook_secret"),
        webhook="signature",
    )

    # --- inbound ------------------------------------------------------------

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        secret = channel.get_secret("webhook_secret")
        signature = request.headers.get(SIGNATURE_HEADER, "").strip()
        nonce = request.headers.get(NONCE_HEADER, "").strip()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        algorithm = request.headers.get(ALGORITHM_HEADER)
        if not secret or not signature or not nonce or not timestamp:
            return False
        if algorithm is not None and algorithm.strip().lower() != ALGORITHM.lower():
            return False
        # compare_digest refuses non-ASCII str; such a value could never match anyway.
        if not (signature.isascii() and nonce.isascii()) or len(nonce) > _MAX_NONCE_LENGTH:
            return False
        if not timestamp.isdigit() or len(timestamp) > 12:
            return False
        if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
            return False
        expected = sinch_signature(request.body, nonce, timestamp, secret)
        if not hmac.compare_digest(expected, signature):
            return False
        # Last, and only for a genuine signature: a nonce is good once. Kept
        # for two windows, as long as its timestamp can still look fresh.
        return expiring_keys.claim_once(f"sinch-nonce:{channel.pk}:{nonce}", 2 * SIGNATURE_WINDOW_SECONDS)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        data = json_body(request)
        kind = _str(data, "type", required=True)
        if kind not in MO_TYPES:
            if kind in _RECIPIENT_REPORTS or kind in _BATCH_REPORTS:
                # A delivery report on the inbound URL: reports belong on the
                # status URL (each batch names it as its callback_url). A 2xx,
                # so Sinch does not retry what would land here again.
                return InboundParse([], response=JsonResponse({"ignored": kind}))
            raise InvalidInput(f"unsupported Sinch callback type '{kind[:40]}'", code="invalid_field")
        message = InboundMessage(
            channel_id=channel.id,
            sender=_vendor_number(_str(data, "from", required=True)),
            content=self._content(kind, data),
            provider_message_id=_str(data, "id", required=True),
            metadata={"raw": data},
        )
        return InboundParse([message])

    @staticmethod
    def _content(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        body = data.get("body")
        if kind == "mo_text":
            text = _str(data, "body", required=True)
            return {"type": "text", "body": text}
        if kind == "mo_binary":
            if not isinstance(body, str):
                raise InvalidInput("'body' must be base64 text", code="invalid_field")
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("'body' is not valid base64", code="invalid_field") from None
            # A binary SMS is bytes for an application (its UDH says which);
            # show its text when it is text, else say what it is. The bytes
            # stay in the event's metadata (raw).
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if not text.strip() or not text.isprintable():
                text = f"[Binary SMS, {len(raw)} bytes]"
            return {"type": "text", "body": text}
        # mo_media: {"subject"?, "message"?, "media": [{"url", "content_type", "status", "code"}]}
        if not isinstance(body, dict):
            raise InvalidInput("'body' must be an object for mo_media", code="invalid_field")
        parts = [p for p in (body.get("subject"), body.get("message")) if isinstance(p, str) and p.strip()]
        media = body.get("media") or []
        if not isinstance(media, list):
            raise InvalidInput("'body.media' must be a list", code="invalid_field")
        # The vendor's URLs are the media content as received (fetching them is not this adapter's job);
        # an item whose upload failed has nothing to point at.
        items = [
            {"url": m["url"], "mime_type": str(m.get("content_type") or "application/octet-stream")}
            for m in media
            if isinstance(m, dict) and isinstance(m.get("url"), str) and m["url"] and m.get("status", "Uploaded") == "Uploaded"
        ]
        return content_from_payload("\n".join(parts) or None, items)

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        data = json_body(request)
        kind = _str(data, "type", required=True)
        if kind in _RECIPIENT_REPORTS:
            update = self._update(data, _str(data, "status", required=True), data.get("code"))
            return [update] if update else []
        if kind in _BATCH_REPORTS:
            statuses = data.get("statuses")
            if not isinstance(statuses, list):
                raise InvalidInput("'statuses' must be a list", code="invalid_field")
            updates = [self._update(data, str(s.get("status") or ""), s.get("code")) for s in statuses if isinstance(s, dict)]
            return [u for u in updates if u]
        if kind in MO_TYPES:
            return []  # an MO on the status URL: not a report; the inbound URL takes those
        raise InvalidInput(f"unsupported Sinch callback type '{kind[:40]}'", code="invalid_field")

    @staticmethod
    def _update(data: dict[str, Any], vendor_status: str, code: Any) -> StatusUpdate | None:
        batch_id = _str(data, "batch_id", required=True)
        status = _STATUS.get(vendor_status.strip().lower())
        if status is None:
            return None  # a status Sinch adds later: nothing we can rank, so no move
        error = f"Sinch: {vendor_status} (code {code})" if status in _FAILURES else ""
        error_code = str(code) if status in _FAILURES and code is not None else ""
        return StatusUpdate(batch_id, status, error=error, raw=data, error_code=error_code)

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    # --- outbound -----------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        config = channel.config or {}
        plan = str(config.get("service_plan_id") or "").strip()
        sender = str(config.get("from") or "").strip()
        token = channel.get_secret("api_token")
        if not plan or not sender or not token:
            return configuration_failure("channel needs config service_plan_id and from, and secret api_token")
        batches_url = f"{_api_base(config)}/xms/v1/{quote(plan, safe='')}/batches"
        headers = {"Authorization": f"Bearer {token}"}
        reference = delivery_idempotency_key(delivery)

        if delivery.attempts > 1 or delivery.last_error:
            # Sinch has no idempotency key for batches. An earlier attempt may
            # have been accepted with its answer lost; the batch carries our
            # key as client_reference, and batches can be listed by it.
            found = self._find_batch(batches_url, headers, reference)
            if isinstance(found, SendResult):
                return found
            if found:
                return SendResult(True, provider_message_id=found, status=DeliveryStatus.QUEUED)

        batch = self._batch(channel, delivery, sender, reference)
        if isinstance(batch, SendResult):
            return batch
        try:
            response = http_client().post(batches_url, json=batch, headers=headers)
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if not 200 <= response.status_code < 300:
            return _failure(response)
        try:
            batch_id = response.json().get("id")
        except (ValueError, AttributeError):
            batch_id = None
        # Accepted into Sinch's queue; its reports say when it is dispatched and delivered.
        return SendResult(True, provider_message_id=str(batch_id or ""), status=DeliveryStatus.QUEUED)

    @staticmethod
    def _batch(channel: Channel, delivery: Delivery, sender: str, reference: str) -> dict[str, Any] | SendResult:
        content = delivery.content or {}
        batch: dict[str, Any] = {
            "from": sender,
            # E.164 with its +, as Sinch's own examples write recipients.
            "to": [delivery.recipient],
            # One report per state change of our one recipient, at our status URL.
            "delivery_report": "per_recipient",
            "callback_url": settings.PUBLIC_BASE_URL + reverse("webhook-status", args=[channel.id]),
            "client_reference": reference,
        }
        if content.get("type") == "media" and content.get("url"):
            body = {"url": content["url"]}
            if content.get("caption"):
                body["message"] = content["caption"]
            return {**batch, "type": "mt_media", "body": body}
        text = content_text(content)
        if not text.strip():
            return SendResult(
                False, error="nothing to send: the content renders to no text", retryable=False, counts_against_breaker=False
            )
        return {**batch, "type": "mt_text", "body": text}

    @staticmethod
    def _find_batch(batches_url: str, headers: dict[str, str], reference: str) -> str | SendResult:
        """The id of a batch already sent under ``reference``, "" if none, or the failure of asking."""
        try:
            response = http_client().get(batches_url, params={"client_reference": reference}, headers=headers)
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if not 200 <= response.status_code < 300:
            return _failure(response)
        try:
            batches = response.json().get("batches") or []
        except (ValueError, AttributeError):
            batches = []
        for batch in batches:
            if isinstance(batch, dict) and batch.get("client_reference") == reference and batch.get("id"):
                return str(batch["id"])
        return ""


def _api_base(config: dict[str, Any]) -> str:
    return str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/")


def _failure(response: httpx.Response) -> SendResult:
    """A non-2xx answer, classified (5xx/408/429 retried and counted as sick; other 4xx final) with Sinch's code.

    Sinch answers 400 and 403 with ``{"code": "syntax_invalid_parameter_format", "text": "…"}``
    (and some 400s in Google's shape, ``{"error": {"code", "message", "status"}}``).
    """
    code, text = "", ""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict):
            code = str(data["error"].get("status") or data["error"].get("code") or "")
            text = str(data["error"].get("message") or "")
        else:
            code, text = str(data.get("code") or ""), str(data.get("text") or "")
    detail = f"{code}: {text}"[:300] if code else response.text[:300]
    result = failure_for_response(response, detail=detail)
    result.error_code = code or str(response.status_code)
    return result
