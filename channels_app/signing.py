"""HMAC-SHA256 request signatures (``X-Signature-256: sha256=<hex>``)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature-256"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str | None, header_value: str | None) -> bool:
    if not secret or not header_value:
        return False
    candidate = header_value.strip()
    # compare_digest raises on non-ASCII str; such a header can never match anyway.
    if not candidate.isascii():
        return False
    return hmac.compare_digest(sign(body, secret), candidate)
