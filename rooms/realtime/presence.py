"""Who is online in a room: a participant is online while at least one of their sockets is open.

Each open socket is registered under its room; a participant goes online with
their first socket and offline when their last one closes, whichever process
holds them. Embedded default: a registry in this process's memory. With
``REDIS_URL``: one sorted set per room in Redis (member = participant, socket
and name; score = expiry), changed by Lua scripts so two processes opening or
closing one participant's sockets at once agree on who was first and last.
Each process renews the entries of its own open sockets; the entries of a
process that died without closing its sockets expire after
``PRESENCE_TTL_SECONDS``, so nobody stays online for ever.

The functions are synchronous (they may talk to Redis); consumers call them
through ``sync_to_async``. Presence changes are published as ephemeral
``presence`` events.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings

from rooms.realtime import broadcast as realtime

logger = logging.getLogger(__name__)
PRESENCE_TTL_SECONDS = 60
_KEY_PREFIX = "roomkit:presence:"
_SEP = "\x1f"

_JOIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return members
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local prefix = ARGV[3]
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #prefix) == prefix then
    return 0
  end
end
return 1
"""


def _member(participant_id: str, socket_id: str, display_name: str) -> str:
    name = "".join(ch for ch in display_name if ch >= " ")
    return f"{participant_id}{_SEP}{socket_id}{_SEP}{name}"


def _parse(member: bytes | str) -> tuple[str, str]:
    text = member.decode() if isinstance(member, bytes) else member
    participant_id, _socket, name = text.split(_SEP, 2)
    return participant_id, name


class _Registry:
    """This process's open sockets: room -> participant -> socket -> display name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rooms: dict[str, dict[str, dict[str, str]]] = {}

    def add(self, room_id: str, participant_id: str, socket_id: str, name: str) -> tuple[bool, dict[str, str]]:
        with self.lock:
            room = self.rooms.setdefault(room_id, {})
            others = {pid: next(iter(socks.values()), "") for pid, socks in room.items() if pid != participant_id}
            sockets = room.setdefault(participant_id, {})
            first = not sockets
            sockets[socket_id] = name
            return first, others

    def remove(self, room_id: str, participant_id: str, socket_id: str) -> tuple[bool, bool]:
        """Forget a socket: (it was registered, it was the participant's last one here)."""
        with self.lock:
            room = self.rooms.get(room_id, {})
            sockets = room.get(participant_id)
            if sockets is None or socket_id not in sockets:
                return False, False
            del sockets[socket_id]
            if sockets:
                return True, False
            del room[participant_id]
            if not room:
                self.rooms.pop(room_id, None)
            return True, True

    def members(self) -> list[tuple[str, str]]:
        with self.lock:
            return [
                (room_id, _member(pid, sid, name))
                for room_id, room in self.rooms.items()
                for pid, sockets in room.items()
                for sid, name in sockets.items()
            ]

    def online(self, room_id: str) -> dict[str, str]:
        with self.lock:
            return {pid: next(iter(s.values()), "") for pid, s in self.rooms.get(room_id, {}).items()}


_local = _Registry()


class _RedisPresence:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.join_script = self.client.register_script(_JOIN)
        self.leave_script = self.client.register_script(_LEAVE)
        self._renewer: threading.Thread | None = None
        self._lock = threading.Lock()

    @staticmethod
    def key(room_id: str) -> str:
        return _KEY_PREFIX + room_id

    def join(self, room_id: str, member: str, participant_id: str) -> tuple[bool, dict[str, str]]:
        now = time.time()
        members = self.join_script(
            keys=[self.key(room_id)],
            args=[member, now, now + PRESENCE_TTL_SECONDS, PRESENCE_TTL_SECONDS * 2000],
        )
        others: dict[str, str] = {}
        first = True
        for raw in members:
            pid, name = _parse(raw)
            if pid == participant_id:
                first = False
            else:
                others.setdefault(pid, name)
        self._ensure_renewer()
        return first, others

    def leave(self, room_id: str, member: str, participant_id: str) -> bool:
        return bool(self.leave_script(keys=[self.key(room_id)], args=[member, time.time(), participant_id + _SEP]))

    def online(self, room_id: str) -> dict[str, str]:
        members = self.client.zrangebyscore(self.key(room_id), time.time(), "+inf")
        result: dict[str, str] = {}
        for raw in members:
            pid, name = _parse(raw)
            result.setdefault(pid, name)
        return result

    def renew(self) -> None:
        """Push back the expiry of this process's open sockets (only those still registered)."""
        members = _local.members()
        if not members:
            return
        expires = time.time() + PRESENCE_TTL_SECONDS
        pipe = self.client.pipeline(transaction=False)
        for room_id, member in members:
            pipe.zadd(self.key(room_id), {member: expires}, xx=True)
            pipe.pexpire(self.key(room_id), PRESENCE_TTL_SECONDS * 2000)
        pipe.execute()

    def _ensure_renewer(self) -> None:
        with self._lock:
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_forever, name="roomkit-presence", daemon=True)
                self._renewer.start()

    def _renew_forever(self) -> None:
        while True:
            time.sleep(PRESENCE_TTL_SECONDS / 3)
            try:
                self.renew()
            except Exception:
                logger.exception("renewing presence entries failed")


_redis: _RedisPresence | None = None
_redis_lock = threading.Lock()


def _shared() -> _RedisPresence | None:
    global _redis
    if not settings.REDIS_URL:
        return None
    with _redis_lock:
        if _redis is None:
            _redis = _RedisPresence(settings.REDIS_URL)
        return _redis


def presence_join(*, room_id: str, participant_id: str, socket_id: str, display_name: str = "") -> list[dict[str, Any]]:
    """Register an open socket of ``participant_id`` in ``room_id``.

    Publishes ``presence`` ``online`` when it is the participant's first open
    socket anywhere. Returns the room's other online participants
    (``[{"participant_id", "display_name"}]``), for the new socket to show.
    """
    first, others = _local.add(room_id, participant_id, socket_id, display_name)
    shared = _shared()
    if shared is not None:
        first, others = shared.join(room_id, _member(participant_id, socket_id, display_name), participant_id)
    if first:
        # Everyone else hears of it; the new socket knows it is online.
        realtime.publish_presence(room_id, participant_id, "online", display_name=display_name, exclude_socket=socket_id)
    return [{"participant_id": pid, "display_name": name} for pid, name in others.items()]


def presence_leave(*, room_id: str, participant_id: str, socket_id: str, display_name: str = "") -> None:
    """Forget a closed socket; publishes ``presence`` ``offline`` if it was the participant's last one."""
    registered, last = _local.remove(room_id, participant_id, socket_id)
    if not registered:
        return
    shared = _shared()
    if shared is not None:
        last = shared.leave(room_id, _member(participant_id, socket_id, display_name), participant_id)
    if last:
        realtime.publish_presence(room_id, participant_id, "offline", display_name=display_name)


def presence_online(room_id: str) -> dict[str, str]:
    """The room's online participants: ``{participant_id: display_name}``."""
    shared = _shared()
    return shared.online(room_id) if shared is not None else _local.online(room_id)
