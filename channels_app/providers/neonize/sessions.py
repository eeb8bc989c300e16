"""The neonize session at rest and the channel's health: the only writes of ``WhatsAppPersonalSession``.

neonize (whatsmeow underneath) keeps a linked device's keys in a sqlite
database it opens by path. The supervisor gives each client a private file in
a temporary directory, restored from the database row before the client
starts, and snapshots it back into the row (``session_save``) when the device
pairs, when the client connects, every ``SAVE_INTERVAL_SECONDS`` while it runs
and when it stops. At rest the snapshot is zlib-compressed and encrypted with
the Fernet key that protects channel secrets (``rooms.secrets``): whoever
reads the database without ``SECRET_KEY`` cannot take over the account.

The snapshot is taken with sqlite's online backup while the Go side may be
writing, so it is always a consistent database, never a torn file copy.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import zlib
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from channels_app.models import WhatsAppPersonalSession, WhatsAppPersonalState
from rooms.secrets import decrypt_secrets, encrypt_secrets

SAVE_INTERVAL_SECONDS = 60.0
# A supervisor beats every few seconds; silent for longer than this, none runs the channel.
HEARTBEAT_STALE_AFTER = timedelta(seconds=60)
_KEY = "sqlite_zlib_b64"


class SessionUnreadable(Exception):
    """The stored session cannot be decrypted (``SECRET_KEY`` changed) or is no sqlite database."""


def snapshot_database(path: str) -> bytes | None:
    """A consistent copy of the sqlite database at ``path`` as bytes; None when there is no file yet."""
    if not os.path.exists(path):
        return None
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    target = sqlite3.connect(":memory:")
    try:
        source.backup(target)
        return target.serialize()
    finally:
        source.close()
        target.close()


def encrypt_session(data: bytes) -> str:
    return encrypt_secrets({_KEY: base64.b64encode(zlib.compress(data, 6)).decode()})


def decrypt_session(token: str) -> bytes:
    """The database bytes in ``token``; ``SessionUnreadable`` when they cannot be read."""
    value = decrypt_secrets(token).get(_KEY)
    if not value:
        raise SessionUnreadable("the stored session cannot be decrypted with this SECRET_KEY")
    try:
        data = zlib.decompress(base64.b64decode(value))
    except (ValueError, zlib.error):
        raise SessionUnreadable("the stored session is corrupt") from None
    if not data.startswith(b"SQLite format 3\x00"):
        raise SessionUnreadable("the stored session is not a sqlite database")
    return data


def session_restore(*, channel_id: str, path: str) -> bool:
    """Write the channel's stored session to ``path`` (mode 0600); False when there is none to restore."""
    token = WhatsAppPersonalSession.objects.filter(channel_id=channel_id).values_list("session_encrypted", flat=True).first()
    if not token:
        return False
    data = decrypt_session(token)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def session_save(*, channel_id: str, path: str, previous_digest: str = "") -> str:
    """Store the database at ``path`` encrypted, unless it is unchanged since ``previous_digest``; returns its digest."""
    data = snapshot_database(path)
    if data is None:
        return previous_digest
    digest = hashlib.sha256(data).hexdigest()
    if digest == previous_digest:
        return digest
    WhatsAppPersonalSession.objects.update_or_create(
        channel_id=channel_id, defaults={"session_encrypted": encrypt_session(data), "session_saved_at": timezone.now()}
    )
    return digest


def session_forget(*, channel_id: str) -> None:
    """Drop the stored session (the phone unlinked the device): the next start pairs anew."""
    WhatsAppPersonalSession.objects.filter(channel_id=channel_id).update(session_encrypted="", session_saved_at=None, account="")


def health_update(*, channel_id: str, **fields: object) -> None:
    """Record what the supervisor knows of the channel's client (state, QR, error, restarts…) and a heartbeat.

    Leaving ``pairing`` clears the QR code: a stale code must not be shown as scannable.
    """
    now = timezone.now()
    values: dict[str, object] = {"heartbeat_at": now, **fields}
    state = fields.get("state")
    if state is not None and state != WhatsAppPersonalState.PAIRING:
        values.setdefault("qr_code", "")
    if "qr_code" in fields and fields["qr_code"]:
        values["qr_updated_at"] = now
    if "last_error" in fields and fields["last_error"]:
        values["last_error_at"] = now
    if state == WhatsAppPersonalState.CONNECTED:
        values.setdefault("connected_at", now)
    with transaction.atomic():
        row, created = WhatsAppPersonalSession.objects.select_for_update().get_or_create(channel_id=channel_id, defaults=values)
        if not created:
            for name, value in values.items():
                setattr(row, name, value)
            row.save(update_fields=[*values, "updated_at"])


def health_restart_recorded(*, channel_id: str, error: str, next_attempt_at) -> int:
    """One more restart after ``error``; returns the channel's restart count."""
    with transaction.atomic():
        row, _ = WhatsAppPersonalSession.objects.select_for_update().get_or_create(channel_id=channel_id)
        row.restarts += 1
        row.state = WhatsAppPersonalState.BACKING_OFF
        row.last_error = error[:2000]
        row.last_error_at = row.heartbeat_at = timezone.now()
        row.next_attempt_at = next_attempt_at
        row.qr_code = ""
        row.save(
            update_fields=[
                "restarts",
                "state",
                "last_error",
                "last_error_at",
                "heartbeat_at",
                "next_attempt_at",
                "qr_code",
                "updated_at",
            ]
        )
        return row.restarts
