"""Meta's webhook signature: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` keyed by the app secret.

Meta signs every POST to a WhatsApp Cloud API or Messenger webhook with the
app's secret (App Dashboard → Settings → Basic), over the body's bytes exactly
as sent (Meta escapes non-ASCII as ``\\uXXXX`` in the JSON it signs; we never
re-serialize, so that does not matter here). There is no timestamp: a replay
of a captured request is a repeat of a message id (``wamid``, ``mid``), which
the inbound path drops, or a status that only moves a delivery forward.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="
_HEX_DIGEST_LENGTH = 64


def sign(body: bytes, app_secret: str) -> str:
    """The header value Meta sends with ``body`` (used by the tests' fakes, and nowhere else)."""
    return _PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, *, app_secret: str | None, header: str | None) -> bool:
    """True when ``header`` is ``sha256=`` and the HMAC-SHA256 of ``body`` under ``app_secret``.

    Compared in constant time. No secret, no header, a header of another
    form: False (the view answers 403 and stores nothing).
    """
    if not app_secret or not header:
        return False
    value = header.strip()
    if not value.lower().startswith(_PREFIX):
        return False
    given = value[len(_PREFIX) :].lower()
    if len(given) != _HEX_DIGEST_LENGTH:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
