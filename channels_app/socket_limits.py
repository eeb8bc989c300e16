"""Rate limits for the chat socket: frames per socket, messages per socket and per participant.

Every message a visitor sends may start a paid AI reply, so one socket (or
one visitor with many tabs) must not be able to send thousands a second.
Limits use the ``limits`` library's moving window, in its notation
(``"20/10 seconds;60/minute"``; an empty string turns a limit off):

- ``ROOMKIT_CHAT_FRAME_RATE``: every frame of one socket (typing, read,
  resume and malformed ones too);
- ``ROOMKIT_CHAT_MESSAGE_RATE``: ``message`` frames of one socket;
- ``ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE``: ``message`` frames of one
  participant across all their sockets, on every server process: kept in
  Redis when ``REDIS_URL`` is set (in this process's memory otherwise).

A socket lives in one process, so its own windows are in this process's
memory. If Redis cannot be reached the participant limit lets the message
through (logged): the chat keeps working and the per-socket limits still hold.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

# In-process windows: plain memory, no I/O, safe to use from the event loop.
_memory = MovingWindowRateLimiter(MemoryStorage())
# Redis windows: the async client is bound to the loop that made it.
_redis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncMovingWindowRateLimiter] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=16)
def _parsed(setting: str, value: str) -> tuple[RateLimitItem, ...]:
    if not value.strip():
        return ()
    try:
        return tuple(parse_many(value))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting}={value!r} is not a rate limit such as '20/10 seconds;60/minute'") from exc


def _limits(setting: str) -> tuple[RateLimitItem, ...]:
    return _parsed(setting, getattr(settings, setting, "") or "")


def _retry_after(limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> float:
    reset = limiter.get_window_stats(item, key).reset_time
    return max(0.1, round(reset - time.time(), 1))


def _check_memory(setting: str, key: str) -> float | None:
    items = _limits(setting)
    # Test every window first, so a refused frame uses up none of them.
    for item in items:
        if not _memory.test(item, key):
            return _retry_after(_memory, item, key)
    for item in items:
        _memory.hit(item, key)
    return None


def _redis_limiter() -> AsyncMovingWindowRateLimiter:
    loop = asyncio.get_running_loop()
    limiter = _redis.get(loop)
    if limiter is None:
        storage = RedisStorage(
            "async+" + settings.REDIS_URL,
            implementation="redispy",
            key_prefix="roomkit-limits",
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        limiter = _redis[loop] = AsyncMovingWindowRateLimiter(storage)
    return limiter


async def _check_shared(setting: str, key: str) -> float | None:
    if not settings.REDIS_URL:
        return _check_memory(setting, key)
    items = _limits(setting)
    if not items:
        return None
    limiter = _redis_limiter()
    try:
        for item in items:
            if not await limiter.test(item, key):
                reset = (await limiter.get_window_stats(item, key)).reset_time
                return max(0.1, round(reset - time.time(), 1))
        for item in items:
            await limiter.hit(item, key)
    except Exception:
        logger.warning("participant rate limit unavailable (Redis); message let through", exc_info=True)
    return None


def chat_frame_check(socket_id: str) -> float | None:
    """None if this socket may send another frame now, else the seconds until it may."""
    return _check_memory("ROOMKIT_CHAT_FRAME_RATE", f"chat-frame:{socket_id}")


async def chat_message_check(socket_id: str, participant_id: str) -> float | None:
    """None if this message may be sent now (socket and participant limits), else the seconds to wait."""
    wait = _check_memory("ROOMKIT_CHAT_MESSAGE_RATE", f"chat-message:{socket_id}")
    if wait is not None:
        return wait
    return await _check_shared("ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE", f"chat-message-participant:{participant_id}")
