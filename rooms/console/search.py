"""Full-text search over the text of room events, for the operators' inbox.

Backed by an index on each database, never a scan of the events' JSON:

- PostgreSQL: a GIN index on ``to_tsvector('simple', content->>'body')`` (an
  expression index: nothing more is written per event than the index entry);
- SQLite: an FTS5 table ``rooms_event_fts`` kept by triggers on the events
  table (the body and its room id, keyed by the event's rowid).

Both use the ``simple`` tokenizer (no stemming, any language) and match every
word of the query as a prefix, so "refu ord" finds "refund for my order".
The index (and the SQLite triggers) are created by migration ``rooms.0008_event_search``.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models.expressions import RawSQL

# Words: letters and digits in any script (the tokenizers split on the rest).
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 8


def search_words(query: str) -> list[str]:
    """The query's words, lower-cased, at most ``MAX_WORDS`` (the rest of the text is ignored)."""
    return [w.lower() for w in _WORD.findall(query or "")][:MAX_WORDS]


def rooms_with_text(query: str) -> RawSQL | None:
    """A subquery of the ids of rooms with an event whose text has every word of ``query`` (as prefixes).

    For ``Room.objects.filter(pk__in=…)``. None when the query has no words.
    """
    words = search_words(query)
    if not words:
        return None
    if connection.vendor == "postgresql":
        # Each word quoted as a lexeme and matched as a prefix: no tsquery syntax from the user reaches Postgres.
        tsquery = " & ".join("'" + w.replace("'", "''") + "':*" for w in words)
        return RawSQL(
            "SELECT room_id FROM rooms_roomevent "
            "WHERE to_tsvector('simple', coalesce(content->>'body', '')) @@ to_tsquery('simple', %s)",
            [tsquery],
        )
    if connection.vendor == "sqlite":
        match = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        return RawSQL("SELECT room_id FROM rooms_event_fts WHERE rooms_event_fts MATCH %s", [match])
    # The project runs on these two (settings: DATABASE_URL); another database has no index to search.
    raise ImproperlyConfigured(f"message search needs PostgreSQL or SQLite, not {connection.vendor}")
