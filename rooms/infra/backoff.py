"""When to try again: exponential backoff with jitter, and the ``Retry-After`` header.

One rule for every retry in the project (transport deliveries, AI provider
calls): the n-th retry waits a random time in ``[c/2, c]`` where
``c = min(max_delay, base * multiplier ** (n - 1))`` ("equal jitter": spread out
so that workers that failed together do not retry together, never above the
configured maximum). A vendor's ``Retry-After`` replaces the computed delay,
capped by the same maximum, so one answer cannot park a retry for days.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff_delay(attempt: int, *, base: float, maximum: float, multiplier: float = 2.0) -> float:
    """Seconds before retry number ``attempt`` (1 = the first retry), jittered, never above ``maximum``."""
    exponent = max(attempt - 1, 0)
    try:
        ceiling = min(maximum, base * multiplier**exponent)
    except OverflowError:  # a huge attempt number: the cap is the answer
        ceiling = maximum
    ceiling = max(ceiling, 0.0)
    return min(random.uniform(ceiling / 2, ceiling), maximum)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (RFC 9110 §10.2.3), or None.

    Both forms are understood: delay-seconds (``"120"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, and the obsolete formats the RFC
    tells recipients to accept). A date in the past means "now" (0). Anything
    else (empty, negative, garbage) is None: the caller falls back to backoff.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


def retry_delay(
    attempt: int,
    *,
    base: float,
    maximum: float,
    multiplier: float = 2.0,
    retry_after: float | None = None,
) -> float:
    """The delay before retry ``attempt``: the vendor's ``retry_after`` if it gave one, else backoff; capped."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), maximum)
    return backoff_delay(attempt, base=base, maximum=maximum, multiplier=multiplier)
