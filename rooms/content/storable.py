"""Text every database we run on can store, checked at every entrance and repaired on every read.

A JSON string may escape an unpaired UTF-16 surrogate (``"\\ud800"``) or a
NUL (``"\\u0000"``). Python decodes both into ``str``; PostgreSQL refuses both
(jsonb and text), and SQLite stores the surrogate inside JSON, from where it
breaks every later encoding to UTF-8 (a page, a socket frame). The inbound
path refuses such text from any edge (``find_unstorable``); rows stored before
that rule, or written around it, are repaired when read (``scrub_unstorable``),
so nothing already stored can break a page or a replay.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> bool:
    """True if ``text`` has no NUL and no unpaired surrogate.

    The common case (ASCII) costs one C-level scan; anything else is checked
    by encoding it, which fails exactly on unpaired surrogates.
    """
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_unstorable(value: Any) -> str | None:
    """The first string inside ``value`` (keys included) that cannot be stored, or None.

    Iterative: the value may be nested as deep as a JSON decoder allowed.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not storable_text(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def scrub_text(text: str) -> str:
    """``text`` with NULs dropped and unpaired surrogates replaced by U+FFFD."""
    if storable_text(text):
        return text
    return _LONE_SURROGATE.sub(REPLACEMENT, text.replace("\x00", ""))


def scrub_unstorable(value: Any) -> Any:
    """A copy of ``value`` whose strings are all storable (only the parts that need it are copied)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_unstorable(k): scrub_unstorable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_unstorable(v) for v in value]
    return value
