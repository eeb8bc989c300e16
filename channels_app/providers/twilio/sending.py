"""Sending one delivery through Twilio's Messages API with the ``twilio`` SDK.

The SDK builds and parses every call (``client.api.v2010.accounts(sid)
.messages.create``, the Content API for RCS templates); we give it three
things it does not decide for itself:

- where to send: the channel's ``api_base`` (and ``content_api_base``) as the
  SDK domains' ``base_url``, never the process environment's
  ``TWILIO_EDGE``/``TWILIO_REGION`` — tests and regional setups point a
  channel at their own server;
- how to send: ``HttpxTwilioClient``, the SDK's pluggable ``HttpClient`` on our
  pooled httpx client (``channels_app.http_client``), which also adds per-call
  headers. The SDK's ``messages.create`` takes no headers argument; the
  transport is the hook it offers, so the idempotency header rides there;
- how a failure is read: ``failure_for_twilio_error`` turns Twilio's error
  codes into retry and circuit-breaker decisions.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels_app.http_client import failure_for_exception, http_client
from channels_app.providers.base import SendResult, delivery_idempotency_key
from channels_app.providers.twilio.config import RCS_PREFIX, TwilioConfig, TwilioConfigError, twilio_config
from channels_app.providers.twilio.rich import needs_template, template_request
from channels_app.providers.twilio.webhooks import STATUS_MAP, sent_as_from
from rooms.content.kinds import content_text
from rooms.enums import ChannelType, DeliveryStatus
from rooms.infra.backoff import parse_retry_after
from rooms.models import Channel, Delivery

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio's Messages API takes up to 10 MediaUrl.
MAX_MEDIA_URLS = 10
TEMPLATE_CACHE_SECONDS = 24 * 3600
# Empty values switch the SDK's environment look-ups off: a channel's config says where it sends.
_NO_ENVIRONMENT = {"TWILIO_EDGE": "", "TWILIO_REGION": ""}

# Twilio error codes that condemn this one message to this one recipient:
# another recipient, or this one later with other content, may well succeed.
RECIPIENT_ERRORS: dict[int, str] = {
    21211: "invalid 'To' number",
    21217: "the number does not appear to be valid",
    21265: "'To' is a short code",
    21408: "sending to this region is not enabled",
    21610: "the recipient has unsubscribed (STOP)",
    21612: "'To' cannot be reached from this sender",
    21614: "'To' is not a mobile number",
}
# Codes that say the channel itself is misconfigured (credentials, sender,
# service): every send will fail alike, so they count toward the breaker,
# which holds the outbox while an operator fixes it, instead of failing it all.
CHANNEL_ERRORS: dict[int, str] = {
    20003: "authentication failed (account SID or auth token)",
    20005: "the account is not active",
    20404: "the account or messaging service was not found",
    21212: "invalid 'From' number",
    21601: "'From' is not an SMS-capable number of this account",
    21603: "'From' or 'MessagingServiceSid' is required",
    21606: "'From' is not a valid message-capable number of this account",
    21664: "'FallbackFrom' cannot be used with 'From'",
    21666: "'FallbackFrom' requires a Messaging Service",
    21667: "'FallbackFrom' requires an RCS sender in the Messaging Service",
}

# What one SDK call needs to know and tell beside its arguments (set by ``_call_context``).
_last_response: contextvars.ContextVar[httpx.Response | None] = contextvars.ContextVar("twilio_last_response", default=None)
_extra_headers: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("twilio_extra_headers", default={})  # noqa: B039
_extra_timeout: contextvars.ContextVar[float] = contextvars.ContextVar("twilio_timeout", default=10.0)
_local = threading.local()
_MAX_CLIENTS_PER_THREAD = 64


class HttpxTwilioClient(HttpClient):
    """The twilio SDK's transport on our pooled httpx client, adding the headers ``extra_headers`` sets.

    It never logs (the SDK's own client logs every request's headers at INFO)
    and lets httpx errors through, so a network failure is classified like any
    other provider's (``failure_for_exception``).
    """

    def __init__(self) -> None:
        super().__init__(logger, is_async=False, timeout=None)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        headers = {**(headers or {}), **_extra_headers.get()}
        body: dict[str, Any] = {"json": data} if headers.get("Content-Type") == "application/json" else {"data": data}
        response = http_client().request(
            method,
            url,
            params=params,
            headers=headers,
            auth=auth,
            timeout=timeout or _extra_timeout.get(),
            follow_redirects=allow_redirects,
            **body,
        )
        _last_response.set(response)
        return Response(response.status_code, response.text, response.headers)


_TRANSPORT = HttpxTwilioClient()


@contextmanager
def _call_context(headers: dict[str, str], timeout: float) -> Iterator[None]:
    tokens = (_extra_headers.set(headers), _extra_timeout.set(timeout), _last_response.set(None))
    try:
        yield
    finally:
        _last_response.reset(tokens[2])
        _extra_timeout.reset(tokens[1])
        _extra_headers.reset(tokens[0])


def twilio_client(cfg: TwilioConfig) -> Client:
    """An SDK client for the channel's account, pointed at its ``api_base``; one per thread and account."""
    clients: dict[tuple[str, ...], Client] = getattr(_local, "clients", None) or {}
    _local.clients = clients
    key = (cfg.account_sid, cfg.auth_token, cfg.api_base, cfg.content_api_base)
    client = clients.get(key)
    if client is None:
        if len(clients) >= _MAX_CLIENTS_PER_THREAD:
            clients.clear()
        client = Client(
            username=cfg.account_sid,
            password=cfg.auth_token,
            account_sid=cfg.account_sid,
            http_client=_TRANSPORT,
            environment=_NO_ENVIRONMENT,
        )
        client.api.base_url = cfg.api_base
        client.content.base_url = cfg.content_api_base
        clients[key] = client
    return client


# --- failures -----------------------------------------------------------------------------


def failure_for_twilio_error(exc: TwilioException, response: httpx.Response | None = None) -> SendResult:
    """A failed send for Twilio's error answer, classified by HTTP status and Twilio error code.

    5xx and 429: Twilio is unwell or busy: retried (after ``Retry-After``),
    counted toward the breaker. A ``RECIPIENT_ERRORS`` code or any other 4xx:
    this message fails at once and says nothing of Twilio's health. A
    ``CHANNEL_ERRORS`` code (or a bare 401/403): not retried, but counted, so
    a misconfigured channel opens its breaker and its outbox waits.
    """
    status = int(getattr(exc, "status", 0) or 0)
    raw_code = getattr(exc, "code", None)
    code = raw_code if isinstance(raw_code, int) and raw_code >= 10000 else None
    message = str(getattr(exc, "msg", "") or getattr(exc, "detail", "") or getattr(exc, "title", "") or "")
    error_code = str(code) if code is not None else ""
    text = f"Twilio HTTP {status}" + (f" error {code}" if code else "") + (f": {message}" if message else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
    if status >= 500 or status in (408, 429) or code == 20429:
        return SendResult(
            False, error=text, retryable=True, retry_after=retry_after, counts_against_breaker=True, error_code=error_code
        )
    if code in CHANNEL_ERRORS or (code is None and status in (401, 403)):
        reason = CHANNEL_ERRORS.get(code or 0, "Twilio refused the account's credentials")
        return SendResult(False, error=f"{text} ({reason})", retryable=False, counts_against_breaker=True, error_code=error_code)
    reason = RECIPIENT_ERRORS.get(code or 0)
    return SendResult(
        False,
        error=f"{text} ({reason})" if reason else text,
        retryable=False,
        counts_against_breaker=False,
        error_code=error_code,
    )


def _config_failure(message: str) -> SendResult:
    # Our configuration, not Twilio's health: fail it, do not count it.
    return SendResult(False, error=message, retryable=False, counts_against_breaker=False)


# --- what to send -------------------------------------------------------------------------


def status_callback_url(channel: Channel) -> str:
    """Where Twilio reports on the channel's messages (``StatusCallback``; it overrides a Messaging Service's own)."""
    return settings.PUBLIC_BASE_URL + reverse("webhook-status", args=[channel.id])


def _recipient(channel: Channel, cfg: TwilioConfig, recipient: str) -> str:
    """RCS without fallback is addressed ``rcs:+1…`` (Twilio's documented switch); all else plain E.164."""
    number = recipient[len(RCS_PREFIX) :] if recipient.lower().startswith(RCS_PREFIX) else recipient
    if channel.channel_type == ChannelType.RCS and _rcs_only(cfg):
        return RCS_PREFIX + number
    return number


def _rcs_only(cfg: TwilioConfig) -> bool:
    """No SMS fallback: the channel says so, or its sender is an RCS sender with no Messaging Service to fall back through."""
    if not cfg.fallback:
        return True
    return not cfg.messaging_service_sid and cfg.sender.lower().startswith(RCS_PREFIX)


def _sender_params(channel: Channel, cfg: TwilioConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if cfg.messaging_service_sid:
        # The service picks the sender from its pool (RCS first when it holds
        # an RCS sender); "from" then only names the number for inbound routing.
        params["messaging_service_sid"] = cfg.messaging_service_sid
        if channel.channel_type == ChannelType.RCS and cfg.fallback and cfg.fallback_from:
            params["fallback_from"] = cfg.fallback_from
    else:
        params["from_"] = cfg.sender
    return params


def _content_sid(client: Client, cfg: TwilioConfig, content: dict[str, Any]) -> tuple[str, str]:
    """The ``HX…`` sid of a template for ``content``, created once (``rich.template_request``), and its cache key."""
    digest, request = template_request(content)
    key = f"twilio-content:{cfg.account_sid}:{digest}"
    sid = cache.get(key)
    if not sid:
        # The SDK's generated TwilioCard model has no ``body`` (RCS's card
        # description), so the request goes through the SDK's Content domain
        # as the JSON Twilio documents, not through that model.
        created = client.content.v1.create(
            method="POST",
            uri="/Content",
            data=request,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        sid = str(created.get("sid") or "")
        if not sid:
            raise TwilioRestException(502, "/v1/Content", "the Content API answered without a sid")
        cache.set(key, sid, TEMPLATE_CACHE_SECONDS)
    return sid, key


def _body_params(content: dict[str, Any]) -> dict[str, Any]:
    kind = content.get("type")
    if kind == "text":
        return {"body": content.get("body", "")}
    if kind == "media":
        params: dict[str, Any] = {"media_url": [content["url"]]}
        if content.get("caption"):
            params["body"] = content["caption"]
        return params
    if kind == "rich":
        # Rich content with nothing to tap (or on a channel without templates): its text, options listed.
        return {"body": content_text(content)}
    if kind == "composite":
        media = [p["url"] for p in content.get("parts", []) if p.get("type") == "media" and p.get("url")]
        text = "\n".join(content_text(p) for p in content.get("parts", []) if p.get("type") != "media")
        params = {"media_url": media[:MAX_MEDIA_URLS]} if media else {}
        if text.strip():
            params["body"] = text
        return params
    return {"body": content_text(content)}


# --- send ---------------------------------------------------------------------------------


def send_delivery(channel: Channel, delivery: Delivery) -> SendResult:
    """Send one delivery as a Twilio Message; never raises for Twilio's or the network's failures."""
    try:
        cfg = twilio_config(channel)
    except TwilioConfigError as exc:
        return _config_failure(str(exc))
    if not cfg.sender and not cfg.messaging_service_sid:
        return _config_failure("the channel needs config 'from' or 'messaging_service_sid'")
    client = twilio_client(cfg)
    content = delivery.content or {}
    params: dict[str, Any] = {
        "to": _recipient(channel, cfg, delivery.recipient),
        "status_callback": status_callback_url(channel),
        **_sender_params(channel, cfg),
    }
    template_key = ""
    headers = {IDEMPOTENCY_HEADER: delivery_idempotency_key(delivery)}
    with _call_context(headers, cfg.timeout):
        try:
            if channel.channel_type == ChannelType.RCS and needs_template(content):
                params["content_sid"], template_key = _content_sid(client, cfg, content)
            else:
                params.update(_body_params(content))
                if not params.get("body") and not params.get("media_url"):
                    return _config_failure("the delivery has no text or media to send")
            message = client.api.v2010.accounts(cfg.account_sid).messages.create(**params)
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        except (TwilioRestException, TwilioServiceException) as exc:
            if template_key and 400 <= int(getattr(exc, "status", 0) or 0) < 500:
                # A template deleted at Twilio would fail every send naming it: make the next one anew.
                cache.delete(template_key)
            return failure_for_twilio_error(exc, _last_response.get())
        except (TwilioException, json.JSONDecodeError) as exc:
            # An answer the SDK could not read (not JSON, no body): Twilio or a proxy misbehaving.
            return SendResult(False, error=f"unreadable answer from Twilio: {type(exc).__name__}", retryable=True)
    twilio_status = str(message.status or "").lower()
    status = STATUS_MAP.get(twilio_status, DeliveryStatus.QUEUED)
    if status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
        code = str(message.error_code or "")
        return SendResult(
            False,
            error=f"Twilio {twilio_status}: {message.error_message or ''}".strip(),
            retryable=False,
            counts_against_breaker=False,
            error_code=code,
        )
    if status not in (DeliveryStatus.QUEUED, DeliveryStatus.SENT):
        # "delivered"/"read" at creation would be a first; the callbacks will say so.
        status = DeliveryStatus.SENT
    sent_as = sent_as_from(channel, str(message.from_ or ""))
    if channel.channel_type == ChannelType.RCS and params["to"].lower().startswith(RCS_PREFIX):
        sent_as = "rcs"
    return SendResult(True, provider_message_id=str(message.sid or ""), status=status, sent_as=sent_as)
