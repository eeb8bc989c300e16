"""Telnyx webhook signatures: Ed25519 over ``{telnyx-timestamp}|{raw body}``.

Telnyx (API v2) signs every webhook with its account key pair and sends the
base64 signature in ``telnyx-signature-ed25519`` and the Unix time it signed at
in ``telnyx-timestamp``. We verify against the account's public key (base64,
from the Mission Control portal, stored as the channel's config
``public_key``) with PyNaCl, and refuse a timestamp more than five minutes
away from our clock in either direction, so a captured request cannot be
replayed later (a replay inside the window is a repeat of a message id,
which the inbound path drops).
"""

from __future__ import annotations

import base64
import binascii
import time
from functools import lru_cache

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_SECONDS = 300
_ED25519_PUBLIC_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
# Seconds since the epoch fit in 10 digits until the year 2286; a longer header is not a timestamp.
_MAX_TIMESTAMP_DIGITS = 12


@lru_cache(maxsize=256)
def _verify_key(public_key: str) -> VerifyKey | None:
    """The key object for a base64 public key (parsing it costs more than a verification), or None if it is no key."""
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _ED25519_PUBLIC_KEY_BYTES:
        return None
    return VerifyKey(raw)


def verify_signature(
    body: bytes,
    *,
    public_key: str | None,
    signature: str | None,
    timestamp: str | None,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """True when ``signature`` is Telnyx's signature of ``{timestamp}|{body}`` and ``timestamp`` is fresh.

    Every way to fail is a plain False (missing or malformed header, a key
    that is no key, a stale or future timestamp, a signature of other bytes):
    the caller answers 403 and stores nothing.
    """
    if not public_key or not isinstance(public_key, str) or not signature or not timestamp:
        return False
    key = _verify_key(public_key)
    if key is None:
        return False
    stamp = timestamp.strip()
    # isascii: str.isdigit() also accepts other scripts' digits, which int() would read.
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _MAX_TIMESTAMP_DIGITS:
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    try:
        raw_signature = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw_signature) != _ED25519_SIGNATURE_BYTES:
        return False
    try:
        # The signed message is the timestamp exactly as sent, a "|", and the body's bytes as received.
        key.verify(stamp.encode() + b"|" + body, raw_signature)
    except BadSignatureError:
        return False
    return True
