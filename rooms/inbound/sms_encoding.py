"""How an SMS text travels: GSM-7 or UCS-2, and how many segments it costs.

A text whose every character is in the GSM 03.38 alphabet (with its extension
table: ``€ [ ] { } ~ \\ ^ |`` cost two septets each) is sent in GSM-7: 160
septets in one message, 153 per segment once it needs several (the rest is the
concatenation header). One character outside it (an emoji, ``…``, ``ç``)
moves the whole text to UCS-2: 70 UTF-16 units alone, 67 per segment, and an
emoji is two units. A two-septet character or a surrogate pair is never split
across segments. The alphabet itself comes from the ``gsm0338`` codec.
"""

from __future__ import annotations

from dataclasses import dataclass

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

GSM7 = "GSM-7"
UCS2 = "UCS-2"
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # GSM7 or UCS2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def is_gsm7(text: str) -> bool:
    """True if ``text`` can be sent in the GSM 7-bit alphabet."""
    try:
        text.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True


def _unit_sizes(text: str, encoding: str) -> list[int]:
    if encoding == GSM7:
        return [len(ch.encode("gsm03.38")) for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def sms_size(text: str) -> SmsSize:
    """The encoding, length in units and segment count of ``text`` sent as one SMS (0 segments if empty)."""
    encoding = GSM7 if is_gsm7(text) else UCS2
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    single, per_segment = _LIMITS[encoding]
    if units <= single:
        return SmsSize(encoding, units, 1 if units else 0)
    segments, used = 1, 0
    for size in sizes:
        if used + size > per_segment:
            segments += 1
            used = 0
        used += size
    return SmsSize(encoding, units, segments)
