"""The room and everything that lives in it.

One ``Room`` holds an ordered log of ``RoomEvent`` rows (``seq`` is gapless and
unique per room), the ``ChannelBinding`` rows that connect channels to it, its
``Participant`` rows, and the outbox of ``Delivery`` rows. Only
``rooms.inbound.process_inbound`` creates events.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rooms import enums
from rooms.fields import SafeJSONField
from rooms.secrets import decrypt_secrets, encrypt_secrets


def new_id() -> str:
    return uuid.uuid4().hex


class Room(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=enums.RoomStatus.choices, default=enums.RoomStatus.ACTIVE, db_index=True)
    metadata = SafeJSONField(default=dict, blank=True)
    # Orchestration state: phase, active agent, handoff count, phase history.
    conversation_state = SafeJSONField(default=dict, blank=True)
    # Per-room AI overrides (system prompt, temperature, tools).
    ai_config = SafeJSONField(default=dict, blank=True)
    # Highest seq handed out; the next event takes last_seq + 1 under a row lock.
    last_seq = models.PositiveBigIntegerField(default=0)
    # Bumped whenever a binding or participant of the room changes, so a
    # process may cache the room's routing and check it under the seq lock.
    routing_version = models.PositiveBigIntegerField(default=0)
    inactive_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    closed_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_activity_at = models.DateTimeField(null=True, blank=True, db_index=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The operators' inbox: who works on the conversation, where it stands, how it is labelled.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_rooms"
    )
    team = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    conversation_status = models.CharField(
        max_length=16, choices=enums.ConversationStatus.choices, default=enums.ConversationStatus.OPEN
    )
    snoozed_until = models.DateTimeField(null=True, blank=True)
    labels = models.ManyToManyField("rooms.Label", blank=True, related_name="rooms")

    class Meta:
        ordering = ["-last_activity_at", "-created_at"]
        indexes = [
            # The inbox's lists: a status (and an assignee), newest activity first.
            models.Index(fields=["conversation_status", "-last_activity_at"], name="room_inbox_status"),
            models.Index(fields=["assignee", "conversation_status", "-last_activity_at"], name="room_inbox_assignee"),
        ]

    def __str__(self) -> str:
        return self.name or self.id


class Channel(models.Model):
    """A configured channel instance (an SMS number, a chat widget, an agent)."""

    id = models.SlugField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200, blank=True)
    channel_type = models.CharField(max_length=32, choices=enums.ChannelType.choices)
    category = models.CharField(max_length=16, choices=enums.ChannelCategory.choices, default=enums.ChannelCategory.TRANSPORT)
    # Registry key of the adapter that speaks to the vendor ("http", "twilio"...).
    provider = models.CharField(max_length=64, blank=True)
    config = SafeJSONField(default=dict, blank=True)
    # Fernet token of a JSON object; read through get_secret(), never displayed.
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    # {"media_types": [...], "max_length": int | None}; empty means the type's defaults.
    capabilities = SafeJSONField(default=dict, blank=True)
    # Whether an inbound message from an unknown sender opens a new room.
    creates_rooms = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id

    def __repr__(self) -> str:  # never include secrets
        return f"<Channel {self.id} {self.channel_type}/{self.provider}>"

    @property
    def secret_names(self) -> list[str]:
        return sorted(decrypt_secrets(self.secrets_encrypted))

    def get_secret(self, name: str, default: str | None = None) -> str | None:
        return decrypt_secrets(self.secrets_encrypted).get(name, default)

    def set_secrets(self, values: dict[str, str], *, replace: bool = False) -> None:
        current = {} if replace else decrypt_secrets(self.secrets_encrypted)
        current.update({k: v for k, v in values.items() if v is not None})
        self.secrets_encrypted = encrypt_secrets(current)

    def effective_capabilities(self) -> dict:
        caps = dict(enums.DEFAULT_CAPABILITIES.get(self.channel_type, {}))
        caps.update(self.capabilities or {})
        return caps


class Identity(models.Model):
    """A known person, reachable at addresses on several channel types."""

    id = models.CharField(primary_key=True, max_length=64, default=new_id)
    display_name = models.CharField(max_length=200, blank=True)
    metadata = SafeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return self.display_name or self.id


class IdentityAddress(models.Model):
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="addresses")
    channel_type = models.CharField(max_length=32, choices=enums.ChannelType.choices)
    address = models.CharField(max_length=255)

    class Meta:
        # Not unique on (channel_type, address): a shared family phone is a
        # real case, and it is what makes a sender "ambiguous".
        constraints = [models.UniqueConstraint(fields=["identity", "channel_type", "address"], name="uniq_identity_address")]
        indexes = [models.Index(fields=["channel_type", "address"])]

    def __str__(self) -> str:
        return f"{self.channel_type}:{self.address}"


class Participant(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="participants")
    identity = models.ForeignKey(Identity, null=True, blank=True, on_delete=models.SET_NULL, related_name="participants")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL)
    address = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=16, choices=enums.ParticipantRole.choices, default=enums.ParticipantRole.MEMBER)
    status = models.CharField(max_length=16, choices=enums.ParticipantStatus.choices, default=enums.ParticipantStatus.ACTIVE)
    identification = models.CharField(
        max_length=16,
        choices=enums.IdentificationStatus.choices,
        default=enums.IdentificationStatus.UNKNOWN,
    )
    last_read_seq = models.PositiveBigIntegerField(default=0)
    metadata = SafeJSONField(default=dict, blank=True)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["room", "channel", "address"])]

    def __str__(self) -> str:
        return self.display_name or self.address or self.id


class ChannelBinding(models.Model):
    """A channel attached to a room, with its access, mute and visibility."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bindings")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="bindings")
    category = models.CharField(max_length=16, choices=enums.ChannelCategory.choices, default=enums.ChannelCategory.TRANSPORT)
    access = models.CharField(max_length=16, choices=enums.Access.choices, default=enums.Access.READ_WRITE)
    muted = models.BooleanField(default=False)
    # Who sees events that come from this channel (see rooms.inbound.visibility).
    visibility = models.CharField(max_length=255, default=enums.Visibility.ALL)
    # The sender/recipient address on this channel: a phone number, an email,
    # a chat participant id. Routing finds a room by (channel, address).
    address = models.CharField(max_length=255, blank=True, db_index=True)
    participant = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="bindings")
    metadata = SafeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "channel", "address"], name="uniq_binding_room_channel_address")]
        indexes = [models.Index(fields=["channel", "address"])]

    def __str__(self) -> str:
        return f"{self.channel_id}@{self.room_id}" + (f" ({self.address})" if self.address else "")


class RoomEvent(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32, choices=enums.EventType.choices, default=enums.EventType.MESSAGE)
    direction = models.CharField(max_length=16, choices=enums.Direction.choices, default=enums.Direction.INBOUND)
    source_channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_participant = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # Typed content: {"type": "text", "body": "..."}; see rooms.content.kinds.
    content = SafeJSONField(default=dict)
    status = models.CharField(max_length=16, choices=enums.EventStatus.choices, default=enums.EventStatus.DELIVERED)
    blocked_by = models.CharField(max_length=255, blank=True)
    visibility = models.CharField(max_length=255, default=enums.Visibility.ALL)
    chain_depth = models.PositiveSmallIntegerField(default=0)
    parent_event = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    correlation_id = models.CharField(max_length=64, blank=True)
    metadata = SafeJSONField(default=dict, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="uniq_event_room_seq"),
            models.UniqueConstraint(
                fields=["source_channel", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="uniq_event_channel_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["source_channel", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="uniq_event_channel_provider_message_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.type}"


class Task(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=enums.TaskStatus.choices, default=enums.TaskStatus.PENDING)
    assigned_to = models.CharField(max_length=255, blank=True)
    event = models.ForeignKey(RoomEvent, null=True, blank=True, on_delete=models.SET_NULL)
    metadata = SafeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.title


class Observation(models.Model):
    """Something noticed about a room: a loop stopped, a hook's finding, a sentiment."""

    id = models.CharField(primary_key=True, max_length=64, default=new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="observations")
    event = models.ForeignKey(RoomEvent, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=64)
    summary = models.TextField(blank=True)
    data = SafeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary[:60]}"


class Delivery(models.Model):
    """One event owed to one bound transport channel: the outbox row."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(RoomEvent, on_delete=models.CASCADE, related_name="deliveries")
    binding = models.ForeignKey(ChannelBinding, null=True, on_delete=models.SET_NULL, related_name="deliveries")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.CharField(max_length=255, blank=True)
    # The event's content transcoded to the target channel's capabilities.
    content = SafeJSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=enums.DeliveryStatus.choices, default=enums.DeliveryStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # SMS targets: how many segments the text costs (GSM-7 or UCS-2), as billed.
    segments = models.PositiveSmallIntegerField(null=True, blank=True)
    # The vendor's error code for a failed send or an undelivered message (Twilio 30003, …).
    error_code = models.CharField(max_length=64, blank=True)
    # How the vendor carried it where a channel can fall back (an RCS channel sent as "sms").
    sent_as = models.CharField(max_length=16, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "binding"], name="uniq_delivery_event_binding")]

    def __str__(self) -> str:
        return f"delivery {self.id} -> {self.channel_id} ({self.status})"


class APIToken(models.Model):
    """An integrator's bearer token; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class RoomReadMarker(models.Model):
    """The operators' read marker of a room: events after ``seq`` are unread in the console.

    One marker per room, shared by the operator team (a team inbox): when any
    operator opens the room page, the room's events up to then are read.
    """

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="operator_read_marker")
    seq = models.PositiveBigIntegerField(default=0)
    read_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.room_id} read to #{self.seq}"


class AuditEntry(models.Model):
    """Who did which console action when: written by ``rooms.console.actions`` only, never edited."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept beside the foreign key: the record outlives the account.
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    room = models.ForeignKey(Room, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries")
    target = models.CharField(max_length=255, blank=True)
    data = SafeJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        permissions = [("operate_console", "Can reply and act in rooms from the operator console")]

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.target or self.room_id or ''}".strip()


class Label(models.Model):
    """A tag operators put on conversations ("billing", "vip"); the inbox filters by it."""

    name = models.SlugField(max_length=50, unique=True)
    color = models.CharField(max_length=7, default="#6b7280", help_text="a CSS colour, #rrggbb")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CannedResponse(models.Model):
    """A saved reply an operator inserts with ``/shortcut`` in the inbox's composer."""

    shortcut = models.SlugField(max_length=50, unique=True, help_text="typed after / in the composer")
    text = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut"]

    def __str__(self) -> str:
        return f"/{self.shortcut}"


class OperatorPresence(models.Model):
    """An operator's availability: online while an inbox page is open (or set by hand), away, offline."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="presence")
    # Set by the operator ("away" while online); the sockets never override it.
    away = models.BooleanField(default=False)
    # Open inbox sockets: online while > 0.
    sockets = models.PositiveIntegerField(default=0)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # Round-robin: the operator offered a conversation longest ago goes first.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} {self.status}"

    @property
    def status(self) -> str:
        from rooms.console.inbox import PRESENCE_TTL

        if self.sockets <= 0 or self.last_seen_at is None or self.last_seen_at < timezone.now() - PRESENCE_TTL:
            return enums.OperatorStatus.OFFLINE
        return enums.OperatorStatus.AWAY if self.away else enums.OperatorStatus.ONLINE
