"""Twilio's requests to us: signature, which channel a message is for, inbound messages, status callbacks.

Twilio signs every webhook with ``X-Twilio-Signature``: HMAC-SHA1, keyed by
the account's Auth Token, over the full URL it called followed by each form
field's name and value in name order. The URL is ours as Twilio knows it:
``PUBLIC_BASE_URL`` + the request's path and query (the view may sit behind a
proxy that changes the host and scheme Django sees). The SDK's
``RequestValidator`` does the arithmetic and tries the URL with and without
the default port, as Twilio's own signing varies there.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, QueryDict
from twilio.request_validator import RequestValidator, compare, get_signature_algorithm

from channels_app.inbound_media import fetch_message_media, message_content
from channels_app.providers.base import StatusUpdate
from channels_app.providers.twilio.config import (
    RCS_PREFIX,
    TwilioConfig,
    TwilioConfigError,
    same_address,
    strip_channel_prefix,
    twilio_config,
)
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import Forbidden, InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
MESSAGE_CHANNEL_TYPES = frozenset({ChannelType.SMS, ChannelType.RCS})
# Twilio attaches at most 10 media to a message.
MAX_MEDIA = 10
# Twilio waits 15 s for our answer; fetching the attachments must leave room for storing the message.
MEDIA_BUDGET_SECONDS = 10.0

# Twilio's MessageStatus → ours. Everything before the carrier has it is
# "queued"; "receiving"/"received" belong to inbound messages and are ignored.
STATUS_MAP: dict[str, str] = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
    "read": DeliveryStatus.READ,
}


# --- signature ----------------------------------------------------------------------------


def signed_url(request: HttpRequest) -> str:
    """The URL Twilio signed: ours as configured, with the path and query it called."""
    return settings.PUBLIC_BASE_URL + request.get_full_path()


def verify_twilio_signature(request: HttpRequest, auth_token: str) -> bool:
    """True when ``X-Twilio-Signature`` is Twilio's signature of this request with ``auth_token``."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature or not auth_token:
        return False
    if "bodySHA256" in request.GET:
        # A JSON-bodied webhook: the signature covers the URL (which carries the
        # body's hash), and the validator checks the raw body against that hash.
        params: Any = request.body.decode("utf-8", errors="replace")
    else:
        params = request.POST
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validator = RequestValidator(auth_token)
    url = signed_url(request)
    if "bodySHA256" not in request.GET:
        # What it buys: the SDK's validate() always computes two signatures (the
        # URL with and without its port); the URL exactly as configured is what
        # Twilio signs almost always, so one HMAC settles it, and validate()
        # runs only when that one does not match.
        try:
            if compare(validator.compute_signature(url, params, algorithm=algorithm), signature):
                return True
        except ValueError:
            pass  # an algorithm this SDK does not know: validate() refuses it, with a warning
    return validator.validate(url, params, signature, algorithm=algorithm)


# --- which channel ------------------------------------------------------------------------


def form_fields(form: QueryDict) -> dict[str, Any]:
    """The form as received, for ``metadata["raw"]``: one value per field, a list where Twilio repeated one."""
    return {key: values[0] if len(values) == 1 else values for key, values in form.lists()}


def account_config(channel: Channel, form: QueryDict) -> TwilioConfig:
    """The channel's Twilio config, for a request about its account; ``Forbidden`` (403) for any other, or none."""
    try:
        cfg = twilio_config(channel)
    except TwilioConfigError as exc:
        raise Forbidden(str(exc), code="channel_not_configured") from None
    if form.get("AccountSid", "") != cfg.account_sid:
        raise Forbidden("the request is for another Twilio account than this channel's", code="wrong_account")
    return cfg


def _claims(channel: Channel, service_sid: str, to: str, *, by: str) -> bool:
    config = channel.config or {}
    if by == "service":
        return bool(service_sid) and str(config.get("messaging_service_sid") or "") == service_sid
    return same_address(str(config.get("from") or ""), to)


def channel_for_message(channel: Channel, cfg: TwilioConfig, form: QueryDict) -> Channel:
    """Which of our message channels an inbound message (verified, of ``cfg``'s account) is for.

    The webhook URL is per channel, but a Messaging Service has one inbound
    URL for every number in its pool, and a number may be in no service, or
    moved to another: ``MessagingServiceSid`` and ``To`` can both be right, or
    either alone. So a channel claims a message by its service, *or else* by
    its ``from`` number, never by the service alone (that drops every message
    to a number whose webhook carries no or another service). The channel
    whose URL was called is asked first; then the account's other SMS/RCS
    channels, by service and then by number. A message no channel claims stays
    on the channel whose URL Twilio was told to call: it is authentic and it
    is ours, and a customer's message is not dropped for our configuration.
    """
    service_sid = form.get("MessagingServiceSid", "")
    to = form.get("To", "")
    if _claims(channel, service_sid, to, by="service") or _claims(channel, service_sid, to, by="number"):
        return channel
    siblings = [
        other
        for other in Channel.objects.filter(provider=channel.provider, enabled=True, channel_type__in=MESSAGE_CHANNEL_TYPES)
        .exclude(pk=channel.pk)
        .order_by("pk")
        if str((other.config or {}).get("account_sid") or "") == cfg.account_sid
    ]
    for by in ("service", "number"):
        for other in siblings:
            if _claims(other, service_sid, to, by=by):
                return other
    logger.warning(
        "twilio webhook on channel %s: no channel has messaging service %r or number %r; kept on %s",
        channel.id,
        service_sid,
        to,
        channel.id,
    )
    return channel


# --- inbound messages ---------------------------------------------------------------------


def _media_count(form: QueryDict) -> int:
    raw = form.get("NumMedia", "0") or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise InvalidInput(f"'NumMedia' must be a number from 0 to {MAX_MEDIA}", code="invalid_field")
    return int(raw)


def _location(form: QueryDict) -> dict[str, Any] | None:
    """A shared location (RCS, WhatsApp): ``Latitude``/``Longitude`` with an optional ``Label`` and ``Address``."""
    if not form.get("Latitude") or not form.get("Longitude"):
        return None
    try:
        latitude, longitude = float(form["Latitude"]), float(form["Longitude"])
    except ValueError:
        raise InvalidInput("'Latitude' and 'Longitude' must be numbers", code="invalid_field") from None
    location: dict[str, Any] = {"type": "location", "latitude": latitude, "longitude": longitude}
    for field, key in (("Label", "label"), ("Address", "address")):
        if form.get(field):
            location[key] = form[field]
    return location


def _fetch_media(cfg: TwilioConfig, form: QueryDict, count: int) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Each attachment stored as ``media`` content, or noted as lost; the message is never dropped for one."""
    items = [(form.get(f"MediaUrl{i}", ""), form.get(f"MediaContentType{i}", "")) for i in range(count)]
    parts, errors = fetch_message_media(
        items,
        vendor="twilio",
        budget=MEDIA_BUDGET_SECONDS,
        timeout=cfg.timeout,
        auth=(cfg.account_sid, cfg.auth_token),
        credential_origin=cfg.api_origin,
    )
    for error in errors:
        logger.warning("twilio media %s of %s not stored: %s", error["index"], form.get("MessageSid", ""), error["error"])
    return parts, errors


def parse_message(channel: Channel, form: QueryDict) -> InboundMessage | None:
    """The verified inbound message as an ``InboundMessage``, or None when it carries nothing to keep."""
    cfg = account_config(channel, form)
    message_sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    if not message_sid:
        raise InvalidInput("'MessageSid' is required", code="missing_field")
    sender = form.get("From", "")
    if not sender:
        raise InvalidInput("'From' is required", code="missing_field")
    target = channel_for_message(channel, cfg, form)
    body = form.get("Body", "")
    count = _media_count(form)
    location = _location(form)
    metadata: dict[str, Any] = {"raw": form_fields(form), "channel": "rcs" if sender.lower().startswith(RCS_PREFIX) else "sms"}
    if form.get("ButtonPayload") or form.get("ButtonText"):
        metadata["button"] = {
            "payload": form.get("ButtonPayload", ""),
            "text": form.get("ButtonText", ""),
            "type": form.get("ButtonType", ""),
        }
    if count and provider_message_stored(channel_id=target.id, provider_message_id=message_sid):
        # A repeat stores nothing new; its content only has to be valid.
        content: dict[str, Any] | None = {"type": "text", "body": body or "[media]"}
    else:
        media, errors = _fetch_media(cfg, form, count) if count else ([], [])
        if errors:
            metadata["media_errors"] = errors
        content = message_content(body, media + ([location] if location is not None else []))
    if content is None:
        logger.info("twilio message %s on %s has no text, media or location; nothing stored", message_sid, channel.id)
        return None
    return InboundMessage(
        channel_id=target.id,
        sender=strip_channel_prefix(sender),
        content=content,
        provider_message_id=message_sid,
        metadata=metadata,
    )


# --- status callbacks ---------------------------------------------------------------------


def sent_as_from(channel: Channel, sender: str, channel_prefix: str = "") -> str:
    """How an RCS channel's message went: ``rcs`` when Twilio says so, ``sms`` when it fell back; "" when unknown.

    Twilio's word for it is the message's ``From``: ``rcs:<sender id>`` when it
    was delivered over RCS, the pool's phone number (or short code) when the
    Messaging Service fell back to SMS/MMS; callbacks for channel messages
    also carry ``ChannelPrefix``. An SMS channel has no choice to report.
    """
    if channel.channel_type != ChannelType.RCS:
        return ""
    if channel_prefix.lower() == "rcs" or sender.lower().startswith(RCS_PREFIX):
        return "rcs"
    return "sms" if sender else ""


def parse_status_callback(channel: Channel, form: QueryDict) -> list[StatusUpdate]:
    """A verified status callback as a ``StatusUpdate`` (none for statuses that say nothing about delivery)."""
    account_config(channel, form)  # raises for another account's callback
    message_sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not message_sid:
        raise InvalidInput("'MessageSid' is required", code="missing_field")
    twilio_status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not twilio_status:
        raise InvalidInput("'MessageStatus' is required", code="missing_field")
    if (form.get("EventType") or "").upper() == "READ":
        twilio_status = "read"
    status = STATUS_MAP.get(twilio_status)
    if status is None:
        return []
    error_code = form.get("ErrorCode", "")
    error_code = "" if error_code in ("", "0") else error_code[:64]
    error = ""
    if status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
        detail = form.get("ChannelStatusMessage") or form.get("ErrorMessage") or ""
        error = f"Twilio {twilio_status}" + (f" (error {error_code})" if error_code else "") + (f": {detail}" if detail else "")
    return [
        StatusUpdate(
            provider_message_id=message_sid,
            status=status,
            error=error,
            raw=form_fields(form),
            error_code=error_code,
            sent_as=sent_as_from(channel, form.get("From", ""), form.get("ChannelPrefix", "")),
        )
    ]
