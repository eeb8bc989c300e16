"""Phone calls to a Twilio ``voice`` channel: the TwiML that connects a call to our Media Streams socket.

Twilio posts its voice webhook (signed like a message's) when the number
rings; we answer ``<Connect><Stream url="wss://…/ws/twilio/<channel_id>/">``,
and Twilio opens a bidirectional Media Stream to that socket
(``voice.twilio_consumer``), where the call is heard and answered.

The caller's number reaches the socket as a ``<Parameter>`` of the stream
(Twilio hands them back in the ``start`` message's ``customParameters``), but
Twilio does not sign those parameters: anyone who can open the socket could
claim any number. So the TwiML also carries a short-lived token of ours
(``stream_token_issue``) binding the channel, the CallSid and the caller; the
socket trusts the caller only through it (``stream_token_verify``), and
checks Twilio's own ``X-Twilio-Signature`` on the WebSocket handshake as
well (``verify_stream_handshake``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.http import HttpResponse, QueryDict
from twilio.request_validator import RequestValidator, compare
from twilio.twiml.voice_response import VoiceResponse

from channels_app.providers.twilio.webhooks import account_config
from rooms.errors import InvalidInput
from rooms.models import Channel

# Names of the stream's <Parameter>s (customParameters in the stream's ``start``).
PARAM_FROM = "From"
PARAM_TO = "To"
PARAM_CALL_SID = "CallSid"
PARAM_TOKEN = "roomkit_token"

_TOKEN_SALT = "channels_app.twilio.stream"
# Twilio opens the stream as soon as it reads our TwiML (well under a second);
# a token older than this was not used for the call it was issued for.
STREAM_TOKEN_MAX_AGE_SECONDS = 120


@dataclass(frozen=True)
class IncomingCall:
    """What a verified voice webhook says about the call."""

    call_sid: str
    caller: str
    called: str
    account_sid: str


@dataclass(frozen=True)
class StreamClaims:
    """What our stream token vouches for."""

    channel_id: str
    call_sid: str
    caller: str
    called: str


def parse_call(channel: Channel, form: QueryDict) -> IncomingCall:
    """The verified voice webhook as an ``IncomingCall``; ``Forbidden`` for another account, 400 without a call."""
    cfg = account_config(channel, form)
    call_sid = form.get("CallSid", "")
    if not call_sid:
        raise InvalidInput("'CallSid' is required", code="missing_field")
    caller = form.get("From", "")
    if not caller:
        raise InvalidInput("'From' is required", code="missing_field")
    return IncomingCall(call_sid=call_sid, caller=caller, called=form.get("To", ""), account_sid=cfg.account_sid)


def stream_url(channel_id: str) -> str:
    """Where Twilio streams a call of ``channel_id``: ``wss://`` on ``PUBLIC_BASE_URL``'s host (Twilio only speaks wss)."""
    host = urlsplit(settings.PUBLIC_BASE_URL).netloc
    return f"wss://{host}/ws/twilio/{channel_id}/"


def stream_token_issue(*, channel_id: str, call_sid: str, caller: str, called: str = "") -> str:
    """A token (signed, timestamped) binding the call's channel, CallSid and caller, for the stream's parameters."""
    return signing.dumps({"ch": channel_id, "call": call_sid, "from": caller, "to": called}, salt=_TOKEN_SALT, compress=True)


def stream_token_verify(token: str, *, channel_id: str, call_sid: str) -> StreamClaims | None:
    """The claims of a token issued for this channel and call within ``STREAM_TOKEN_MAX_AGE_SECONDS``; None otherwise."""
    try:
        data: Any = signing.loads(token or "", salt=_TOKEN_SALT, max_age=STREAM_TOKEN_MAX_AGE_SECONDS)
    except signing.BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or data.get("ch") != channel_id or data.get("call") != call_sid:
        return None
    caller = data.get("from")
    if not isinstance(caller, str) or not caller:
        return None
    return StreamClaims(channel_id=channel_id, call_sid=call_sid, caller=caller, called=str(data.get("to") or ""))


def stream_twiml(channel: Channel, call: IncomingCall) -> HttpResponse:
    """``<Connect><Stream>`` to this channel's socket, the call's parameters and our token on it (TwiML, 200 text/xml)."""
    response = VoiceResponse()
    stream = response.connect().stream(url=stream_url(channel.id))
    stream.parameter(name=PARAM_FROM, value=call.caller)
    stream.parameter(name=PARAM_TO, value=call.called)
    stream.parameter(name=PARAM_CALL_SID, value=call.call_sid)
    token = stream_token_issue(channel_id=channel.id, call_sid=call.call_sid, caller=call.caller, called=call.called)
    stream.parameter(name=PARAM_TOKEN, value=token)
    return HttpResponse(str(response).encode(), content_type="text/xml; charset=utf-8")


def verify_stream_handshake(url: str, signature: str, auth_token: str) -> bool:
    """True when ``X-Twilio-Signature`` on the WebSocket handshake is Twilio's for ``url`` (the stream's URL, no body).

    Twilio signs the upgrade request as any webhook: HMAC-SHA1 of the URL it
    called (here ``wss://…``, with no form fields) keyed by the Auth Token.
    The same address written ``https://`` is accepted too: it is the same
    URL of ours signed with the same token, and a scheme spelled otherwise
    must not refuse every call.
    """
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    twin = "https://" + url.removeprefix("wss://") if url.startswith("wss://") else url
    for candidate in dict.fromkeys((url, twin)):
        # What it buys: validate() computes two HMACs (with and without a port); the URL as written is what Twilio signs.
        if compare(validator.compute_signature(candidate, {}), signature) or validator.validate(candidate, {}, signature):
            return True
    return False
