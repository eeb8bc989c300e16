"""Rows this app owns beside the core's: the state of long-lived vendor clients.

``WhatsAppPersonalSession`` is one ``whatsapp_personal`` channel's neonize
client: its session (the whatsmeow sqlite store, Fernet-encrypted at rest with
the same key as channel secrets) and its health as the supervisor last wrote
it, for the admin to show. It lives here rather than in ``rooms`` so the core
keeps no vendor's state and needs no migration for one.
"""

from __future__ import annotations

from django.db import models


class WhatsAppPersonalState(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    # Waiting for a phone to scan the QR code shown in the admin.
    PAIRING = "pairing", "Waiting for QR scan"
    CONNECTED = "connected", "Connected"
    # Between a failed or lost connection and the next attempt.
    BACKING_OFF = "backing_off", "Reconnecting"
    # The phone unlinked this device: a new QR scan is needed.
    LOGGED_OUT = "logged_out", "Logged out"
    # Restarts exhausted: an operator must look.
    FAILED = "failed", "Failed"


class WhatsAppPersonalSession(models.Model):
    """One WhatsApp Personal channel's neonize session and health (written by its supervisor only)."""

    channel = models.OneToOneField(
        "rooms.Channel", primary_key=True, on_delete=models.CASCADE, related_name="whatsapp_personal_session"
    )
    # Fernet token (rooms.secrets) of the zlib-compressed whatsmeow sqlite database; never displayed.
    session_encrypted = models.TextField(blank=True, default="", editable=False)
    session_saved_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=WhatsAppPersonalState.choices, default=WhatsAppPersonalState.STOPPED)
    # The linked account's JID once paired ("15551234567@s.whatsapp.net").
    account = models.CharField(max_length=255, blank=True)
    # The pairing code to show as a QR while pairing (WhatsApp rotates it every ~20 s); empty otherwise.
    qr_code = models.TextField(blank=True, editable=False)
    qr_updated_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Restarts since the supervisor started this channel (a stable connection resets the backoff, not this count).
    restarts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    # The supervisor's last sign of life: a stale one means no supervisor runs this channel.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "WhatsApp Personal session"

    def __str__(self) -> str:
        return f"{self.channel_id} ({self.state})"

    def __repr__(self) -> str:  # never include the session
        return f"<WhatsAppPersonalSession {self.channel_id} {self.state}>"
