"""Phone-number addresses in one form: E.164, as parsed by ``phonenumbers``.

On phone-number channels (SMS, RCS, WhatsApp, voice) one person writes as
``+1 555-0001``, ``(555) 0001`` (with the channel's default region) or
``+15550001``, and vendors send ``15550001`` (WhatsApp's ``wa_id``) or
``whatsapp:+15550001``. All are one sender, one binding and one room only if
they are one string, so every phone address is normalized on the way in (the
inbound path) and wherever an operator or integrator types one (attaching a
channel, a test message); recipients are the bindings' addresses, so outbound
is E.164 too.

Short codes (3 to 8 digits, as carriers send from) and alphanumeric sender
ids (up to 11 letters and digits) are real senders on SMS but not phone
numbers: they are kept as given. A number written with its ``+`` and country
code is kept (canonically) even when it is too short for its country's plan. Anything else is invalid: a 4xx where a
person typed it, an Observation where a vendor sent it (the message is kept).
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from rooms.enums import ChannelType
from rooms.errors import InvalidInput

PHONE_CHANNEL_TYPES = frozenset({ChannelType.SMS, ChannelType.RCS, ChannelType.WHATSAPP, ChannelType.VOICE})
_SHORT_CODE = re.compile(r"^\d{3,8}$")
_ALPHANUMERIC_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_SCHEME = re.compile(r"^(?:tel|sms|whatsapp|rcs):", re.IGNORECASE)
_POSSIBLE = (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY)


class InvalidPhoneNumber(InvalidInput):
    code = "invalid_phone_number"


def normalize_phone_address(raw: str, *, default_region: str | None = None) -> str:
    """``raw`` as E.164 (``+15550001``); a short code or alphanumeric sender id as given.

    ``default_region`` (ISO 3166 alpha-2, e.g. ``"US"``) reads numbers written
    without a country code. Without one, digits without a ``+`` are read as an
    international number (how WhatsApp and several SMS vendors send them).
    Raises ``InvalidPhoneNumber`` for anything else.
    """
    return _normalize(raw, default_region)


# A sender writes many messages and a parse costs ~70 µs: answers are kept.
@lru_cache(maxsize=8192)
def _normalize(raw: str, default_region: str | None) -> str:
    text = _SCHEME.sub("", (raw or "").strip())
    number = _parse(text, default_region, explicit=text.startswith("+"))
    if number is None and not text.startswith("+") and not default_region:
        number = _parse("+" + text, None, explicit=False)
    if number is not None:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if _SHORT_CODE.match(text):
        return text
    if _ALPHANUMERIC_ID.match(text):
        return text
    raise InvalidPhoneNumber(f"'{raw[:40]}' is not a phone number")


def _parse(text: str, region: str | None, *, explicit: bool) -> phonenumbers.PhoneNumber | None:
    """The number ``text`` spells, if it can be one.

    ``explicit``: written with its ``+`` and country code. Such a number is
    kept (in canonical form) even when too short for its country's plan, as
    test and fictional numbers are (``+1555``); without a ``+`` a too-short
    string is more likely a short code.
    """
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except NumberParseException:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _POSSIBLE or (explicit and reason == ValidationResult.TOO_SHORT):
        return number
    return None


def is_phone_channel(channel_type: str) -> bool:
    return channel_type in PHONE_CHANNEL_TYPES


def channel_default_region(config: dict) -> str | None:
    region = (config or {}).get("default_region")
    return region if isinstance(region, str) and len(region) == 2 else None


def normalize_channel_address(channel_type: str, config: dict, raw: str) -> str:
    """The address as the channel stores it: E.164 on phone-number channels, else stripped as given.

    Raises ``InvalidPhoneNumber`` (400) on a phone-number channel for what is
    not a number, short code or sender id.
    """
    if not raw or not is_phone_channel(channel_type):
        return raw
    return normalize_phone_address(raw, default_region=channel_default_region(config))
