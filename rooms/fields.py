"""Model fields of the room data."""

from __future__ import annotations

from typing import Any

from django.db import models

from rooms.content.storable import scrub_unstorable


class SafeJSONField(models.JSONField):
    """A JSONField whose loaded values hold only text that can be encoded and stored again.

    SQLite keeps JSON as text, and a row written before text was checked (or
    by hand) may escape an unpaired surrogate or a NUL. Decoded as is, such a
    value breaks every page, socket frame and replay that shows it; here the
    offending characters are replaced on load (U+FFFD), so one bad row costs
    one odd character, not a room. Only values whose raw JSON contains a
    ``\\u`` escape of that range are walked.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        decoded = super().from_db_value(value, expression, connection)
        if isinstance(value, str) and ("\\ud" in value or "\\uD" in value or "\\u0000" in value):
            return scrub_unstorable(decoded)
        return decoded
