"""VoiceMeUp SMS/MMS (a Canadian VoIP carrier), provider ``voicemeup``.

What we could learn of VoiceMeUp's API: its public developer site documents
only the older "XML Engine"; the SMS API below is as the RoomKit library's
VoiceMeUp provider and its tests describe it (the reference this project
follows), not as a VoiceMeUp page does. The test fixtures say so too.

Outbound: ``POST {api_base}/api/v1.1/json/queue_sms``, a form with ``username``,
``auth_token``, ``source_number`` and ``destination_number`` (digits, no ``+``),
``message`` and, for an MMS, ``attachment`` (a URL). The answer::

    {"response_details": {"response_status": "success" | "error",
                          "response_messages": {"message": [{"code": "queued_sms_hash", "_content": "<hash>"}]}}}

VoiceMeUp takes at most ``MAX_MESSAGE_CHARS`` a message, so longer text goes
as several messages, in order.

Inbound: VoiceMeUp posts ``message``, ``source_number``, ``destination_number``,
``sms_hash``, ``datetime_transmission`` and, for an MMS, ``attachment`` and
``attachment_mime_type``. It cannot sign them: the webhook URL carries the
channel's secret token (``channels_app.webhook_tokens``). An MMS comes as two
posts: the text with an ``….mms.html`` "metadata wrapper" (not media), then the
media. Each is stored as it comes (the text, then the media), each deduplicated
by its own ``sms_hash``; merging them would need one post to wait for the other.
VoiceMeUp sends no delivery reports: a delivery ends at ``queued``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse, JsonResponse

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
from channels_app.webhook_tokens import WEBHOOK_TOKEN_SECRET, webhook_token_verify
from rooms.content.kinds import content_text
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import InvalidInput, UnsupportedMediaType
from rooms.inbound import InboundMessage, InboundResult
from rooms.models import Channel, Delivery

DEFAULT_API_BASE = "https://clients.voicemeup.com"
SANDBOX_API_BASE = "https://dev-clients.voicemeup.com"
SEND_PATH = "/api/v1.1/json/queue_sms"
MAX_MESSAGE_CHARS = 1000
# How long a multi-part send remembers which parts went, for its retries.
_PARTS_MEMORY_SECONDS = 7 * 24 * 3600
# VoiceMeUp's answer to a message it has already queued.
_DUPLICATE = "duplicate_entry"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number or "")


def _vendor_number(raw: Any) -> str:
    """VoiceMeUp serves North American numbers and may write them without ``+1``: give E.164 back."""
    text = str(raw or "").strip()
    if text.isdigit() and len(text) == 10:
        return "+1" + text
    if text.isdigit() and len(text) == 11 and text.startswith("1"):
        return "+" + text
    return text


def _is_metadata_wrapper(url: str, mime_type: str) -> bool:
    """The first post of an MMS carries an HTML page about the message, not the media."""
    return url.endswith(".mms.html") or (mime_type == "text/html" and ".mms." in url)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut at a space where there is one."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        head = text[:cut].rstrip()
        if head:
            parts.append(head)
        text = text[cut:].lstrip()
    if text.strip():
        parts.append(text)
    return parts


def _answer(response: httpx.Response) -> tuple[str, list[dict[str, Any]]] | None:
    """``(response_status, messages)`` from a VoiceMeUp answer, or None when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return None
    details = data.get("response_details") if isinstance(data, dict) else None
    if not isinstance(details, dict) or not isinstance(details.get("response_status"), str):
        return None
    messages = (details.get("response_messages") or {}).get("message") or []
    if isinstance(messages, dict):
        messages = [messages]
    return details["response_status"], [m for m in messages if isinstance(m, dict)]


class VoiceMeUpSMSProvider:
    """VoiceMeUp's ``queue_sms`` out; its token-verified webhooks in (it cannot sign)."""

    name = "voicemeup"
    spec = ProviderSpec(
        label="VoiceMeUp SMS/MMS",
        channel_types=frozenset({ChannelType.SMS}),
        config_fields=(
            ConfigField("username", "API username", required=True),
            ConfigField("from", "From", required=True, help="Your VoiceMeUp DID, E.164 (+15145551234)"),
            ConfigField("api_base", "API base URL", help=f"Default {DEFAULT_API_BASE}; sandbox {SANDBOX_API_BASE}"),
        ),
        secrets=("auth_token", WEBHOOK_TOKEN_SECRET),
        required_secrets=("auth_token", WEBHOOK_TOKEN_SECRET),
        webhook="token",
        status_callbacks=False,
    )

    # --- inbound ------------------------------------------------------------

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return webhook_token_verify(channel, request)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        data = self._payload(request)
        if str(data.get("direction") or "inbound").lower() != "inbound":
            # VoiceMeUp reporting a message we sent: not something a sender said.
            return InboundParse([], response=JsonResponse({"ignored": "outbound"}))
        source = data.get("source_number")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInput("'source_number' is required", code="missing_field")
        text = data.get("message")
        if text is not None and not isinstance(text, str):
            raise InvalidInput("'message' must be a string", code="invalid_field")
        url = data.get("attachment") or data.get("attachment_url") or ""
        if not isinstance(url, str):
            raise InvalidInput("'attachment' must be a URL", code="invalid_field")
        mime_type = str(data.get("attachment_mime_type") or data.get("attachment_type") or "")
        media = []
        if url and not _is_metadata_wrapper(url, mime_type):
            mime_type = mime_type or mimetypes.guess_type(url)[0] or "application/octet-stream"
            # The vendor's URL is the media content as received; fetching it is not this adapter's job.
            media = [{"url": url, "mime_type": mime_type}]
        if not media and not (text or "").strip():
            if url:
                # The wrapper half of an MMS with no text: the media comes in the next post.
                return InboundParse([], response=JsonResponse({"ignored": "mms_metadata"}))
            raise InvalidInput("'message' or 'attachment' is required", code="missing_field")
        message = InboundMessage(
            channel_id=channel.id,
            sender=_vendor_number(source),
            content=content_from_payload(text or None, media),
            provider_message_id=self._message_id(data),
            metadata={"raw": data},
        )
        return InboundParse([message])

    @staticmethod
    def _payload(request: HttpRequest) -> dict[str, Any]:
        ctype = (request.content_type or "").lower()
        if ctype == "application/json":
            return json_body(request)
        if ctype in _FORM_TYPES:
            return {key: request.POST.get(key) for key in request.POST}
        raise UnsupportedMediaType("expected a form or JSON body")

    @staticmethod
    def _message_id(data: dict[str, Any]) -> str:
        sms_hash = data.get("sms_hash")
        if isinstance(sms_hash, str) and sms_hash.strip():
            return sms_hash.strip()
        # No hash: the same post again (a vendor retry) must still be one message.
        fields = ("source_number", "destination_number", "datetime_transmission", "message", "attachment")
        digest = hashlib.sha256("\x1f".join(str(data.get(f) or "") for f in fields).encode()).hexdigest()
        return "derived-" + digest[:40]

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        raise InvalidInput("VoiceMeUp sends no delivery-status callbacks", code="unsupported")

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    # --- outbound -----------------------------------------------------------

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        config = channel.config or {}
        username = str(config.get("username") or "").strip()
        source = _digits(str(config.get("from") or ""))
        token = channel.get_secret("auth_token")
        if not username or not source or not token:
            return configuration_failure("channel needs config username and from, and secret auth_token")
        url = str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/") + SEND_PATH
        # Credentials in the form body, never in the URL (URLs end up in logs).
        form = {
            "username": username,
            "auth_token": token,
            "source_number": source,
            "destination_number": _digits(delivery.recipient),
        }
        content = delivery.content or {}
        if content.get("type") == "media" and content.get("url"):
            mms = {**form, "attachment": content["url"]}
            if content.get("caption"):
                mms["message"] = content["caption"]
            return self._post(url, mms, delivery, part_key=None)
        parts = split_message(content_text(content))
        if not parts:
            return SendResult(
                False, error="nothing to send: the content renders to no text", retryable=False, counts_against_breaker=False
            )
        if len(parts) == 1:
            return self._post(url, {**form, "message": parts[0]}, delivery, part_key=None)
        # Several messages for one delivery: a retry must not send again the
        # parts that already went, so each accepted part is noted.
        key = delivery_idempotency_key(delivery)
        hashes: list[str] = []
        for i, part in enumerate(parts):
            part_key = f"voicemeup-part:{key}:{i}"
            done = expiring_keys.read_note(part_key)
            if done is not None:
                hashes.append(done)
                continue
            result = self._post(url, {**form, "message": part}, delivery, part_key=part_key)
            if not result.ok:
                if i:
                    result.error = f"part {i + 1} of {len(parts)}: {result.error}"
                return result
            hashes.append(result.provider_message_id)
        return SendResult(True, provider_message_id=",".join(h for h in hashes if h), status=DeliveryStatus.QUEUED)

    @staticmethod
    def _post(url: str, form: dict[str, str], delivery: Delivery, *, part_key: str | None) -> SendResult:
        try:
            response = http_client().post(url, data=form)
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if not 200 <= response.status_code < 300:
            result = failure_for_response(response)
            result.error_code = str(response.status_code)
            return result
        answer = _answer(response)
        if answer is None:
            # A 2xx we cannot read: it may have been queued, so sending again
            # could double it. Fail it for an operator to look at.
            return SendResult(
                False,
                error=f"unreadable answer: {response.text[:200]}",
                retryable=False,
                counts_against_breaker=True,
                error_code="unreadable_answer",
            )
        status, messages = answer
        if status == "success":
            sms_hash = next((str(m.get("_content") or "") for m in messages if m.get("code") == "queued_sms_hash"), "")
            if part_key:
                expiring_keys.note(part_key, sms_hash, _PARTS_MEMORY_SECONDS)
            return SendResult(True, provider_message_id=sms_hash, status=DeliveryStatus.QUEUED)
        code = str(messages[0].get("code") or "unknown_error") if messages else "unknown_error"
        description = str(messages[0].get("_content") or code) if messages else code
        if code == _DUPLICATE and (delivery.attempts > 1 or delivery.last_error):
            # An earlier attempt of this delivery was queued and its answer lost.
            if part_key:
                expiring_keys.note(part_key, "", _PARTS_MEMORY_SECONDS)
            return SendResult(True, status=DeliveryStatus.QUEUED)
        # VoiceMeUp refused this message (bad number, no permission): a retry cannot fix it.
        return SendResult(
            False, error=f"VoiceMeUp {code}: {description}"[:500], retryable=False, counts_against_breaker=False, error_code=code
        )
