"""A Twilio channel's settings, read from its ``config`` and secrets in one place."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from rooms.addresses import InvalidPhoneNumber, normalize_phone_address
from rooms.models import Channel

DEFAULT_API_BASE = "https://api.twilio.com"
DEFAULT_CONTENT_API_BASE = "https://content.twilio.com"
RCS_PREFIX = "rcs:"
DEFAULT_TIMEOUT_SECONDS = 10.0


class TwilioConfigError(Exception):
    """The channel lacks something every Twilio call needs (a fault of ours, not of Twilio's)."""


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str
    sender: str  # config "from": an E.164 number, a short code, an alphanumeric id or "rcs:<sender id>"
    messaging_service_sid: str
    fallback: bool
    fallback_from: str
    api_base: str
    content_api_base: str
    timeout: float

    @property
    def api_origin(self) -> str:
        """Where Twilio's media URLs (and only they) may receive the account's credentials."""
        parts = urlsplit(self.api_base)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _content_base_for(api_base: str) -> str:
    """Twilio's Content API lives beside its REST API: ``api.<edge>.twilio.com`` → ``content.<edge>.twilio.com``.

    Any other ``api_base`` (a local fake server, a proxy) serves both: their
    paths do not overlap (``/2010-04-01/…`` and ``/v1/Content``).
    """
    if api_base == DEFAULT_API_BASE:
        return DEFAULT_CONTENT_API_BASE
    parts = urlsplit(api_base)
    if parts.hostname and parts.hostname.startswith("api.") and parts.hostname.endswith(".twilio.com"):
        return urlunsplit((parts.scheme, "content." + parts.netloc[4:], parts.path, "", ""))
    return api_base


def _flag(value: object, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return bool(value)


def twilio_config(channel: Channel) -> TwilioConfig:
    """The channel's Twilio settings; ``TwilioConfigError`` when it has no account or token."""
    config = channel.config or {}
    account_sid = str(config.get("account_sid") or "").strip()
    auth_token = channel.get_secret("auth_token") or ""
    if not account_sid or not auth_token:
        raise TwilioConfigError("the channel needs config 'account_sid' and the secret 'auth_token'")
    api_base = str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/")
    try:
        timeout = float(config.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT_SECONDS
    return TwilioConfig(
        account_sid=account_sid,
        auth_token=auth_token,
        sender=str(config.get("from") or "").strip(),
        messaging_service_sid=str(config.get("messaging_service_sid") or "").strip(),
        fallback=_flag(config.get("fallback"), True),
        fallback_from=str(config.get("fallback_from") or "").strip(),
        api_base=api_base,
        content_api_base=str(config.get("content_api_base") or _content_base_for(api_base)).rstrip("/"),
        timeout=timeout if timeout > 0 else DEFAULT_TIMEOUT_SECONDS,
    )


def strip_channel_prefix(address: str) -> str:
    """``rcs:+15550001`` → ``+15550001``; Twilio's channel addresses carry their channel as a prefix."""
    address = (address or "").strip()
    if address.lower().startswith(RCS_PREFIX):
        return address[len(RCS_PREFIX) :]
    return address


def same_address(ours: str, theirs: str) -> bool:
    """Whether two of Twilio's addresses name one sender: a number in any spelling, or one RCS sender id."""
    a, b = strip_channel_prefix(ours), strip_channel_prefix(theirs)
    if not a or not b:
        return False
    if a.lower() == b.lower():
        return True
    try:
        return normalize_phone_address(a) == normalize_phone_address(b)
    except InvalidPhoneNumber:
        return False
