"""Vocabulary of the room model: statuses, channel and event types, capabilities."""

from __future__ import annotations

from django.db import models


class RoomStatus(models.TextChoices):
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"
    ARCHIVED = "archived"


class ConversationStatus(models.TextChoices):
    """Where a conversation stands in the operators' inbox (the room's lifecycle is ``RoomStatus``)."""

    OPEN = "open"
    # Waiting on the customer: the team has answered.
    PENDING = "pending", "pending on the customer"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


class OperatorStatus(models.TextChoices):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class ChannelType(models.TextChoices):
    SMS = "sms", "SMS"
    RCS = "rcs", "RCS"
    EMAIL = "email", "Email"
    WEBSOCKET = "websocket", "WebSocket (web chat)"
    MESSENGER = "messenger", "Messenger"
    TEAMS = "teams", "Teams"
    TELEGRAM = "telegram", "Telegram"
    WHATSAPP = "whatsapp", "WhatsApp"
    WHATSAPP_PERSONAL = "whatsapp_personal", "WhatsApp Personal"
    VOICE = "voice", "Voice"
    REALTIME_VOICE = "realtime_voice", "Realtime voice"
    WEBHOOK = "webhook", "HTTP webhook"
    AI = "ai", "AI agent"
    # Our own entry points: the REST API and the operator console.
    API = "api", "API"
    CONSOLE = "console", "Operator console"


class ChannelCategory(models.TextChoices):
    TRANSPORT = "transport"
    INTELLIGENCE = "intelligence"


class Access(models.TextChoices):
    READ_WRITE = "read_write"
    READ_ONLY = "read_only"
    WRITE_ONLY = "write_only"
    NONE = "none"


class Visibility(models.TextChoices):
    ALL = "all"
    NONE = "none"
    TRANSPORT = "transport"
    INTELLIGENCE = "intelligence"
    # Seen in the operator console only (notes): no channel receives it.
    INTERNAL = "internal"


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class EventType(models.TextChoices):
    MESSAGE = "message"
    SYSTEM = "system"
    EDIT = "edit"
    DELETE = "delete"
    REACTION = "reaction"
    NOTE = "note"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_LEFT = "participant_left"
    PARTICIPANT_IDENTIFIED = "participant_identified"
    CHANNEL_ATTACHED = "channel_attached"
    CHANNEL_DETACHED = "channel_detached"
    CHANNEL_MUTED = "channel_muted"
    CHANNEL_UNMUTED = "channel_unmuted"
    CHANNEL_UPDATED = "channel_updated"
    ROOM_CREATED = "room_created"
    ROOM_PAUSED = "room_paused"
    ROOM_CLOSED = "room_closed"
    ROOM_REOPENED = "room_reopened"
    TASK_CREATED = "task_created"
    OBSERVATION = "observation"
    DELIVERY_STATUS = "delivery_status"
    HANDOFF = "handoff"
    PHASE_TRANSITION = "phase_transition"


# Events that carry something a person said; the rest are room bookkeeping.
CONVERSATIONAL_EVENT_TYPES = frozenset({EventType.MESSAGE, EventType.EDIT, EventType.DELETE, EventType.REACTION})


class ContentType(models.TextChoices):
    TEXT = "text"
    RICH = "rich"
    MEDIA = "media"
    LOCATION = "location"
    AUDIO = "audio"
    VIDEO = "video"
    TEMPLATE = "template"
    COMPOSITE = "composite"
    SYSTEM = "system"
    EDIT = "edit"
    DELETE = "delete"


class EventStatus(models.TextChoices):
    DELIVERED = "delivered"
    BLOCKED = "blocked"


class ParticipantRole(models.TextChoices):
    OWNER = "owner"
    MEMBER = "member"
    AGENT = "agent"
    OPERATOR = "operator"
    OBSERVER = "observer"
    SYSTEM = "system"


class ParticipantStatus(models.TextChoices):
    ACTIVE = "active"
    LEFT = "left"


class IdentificationStatus(models.TextChoices):
    IDENTIFIED = "identified"
    AMBIGUOUS = "ambiguous"
    UNKNOWN = "unknown"
    CHALLENGED = "challenged"
    REJECTED = "rejected"


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class DeliveryStatus(models.TextChoices):
    """Where a delivery is: ours (pending, sending, dead), then the vendor's (queued … read).

    A vendor's status callbacks only move it forward (``channels_app.services``).
    """

    PENDING = "pending"
    SENDING = "sending"
    # Accepted by the vendor, not yet handed to the carrier.
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    # The carrier could not deliver it (the vendor's final word).
    UNDELIVERED = "undelivered"
    READ = "read"
    FAILED = "failed"
    # Retries exhausted: a dead letter, retried by an operator.
    DEAD = "dead"


T = ContentType
_ALL_MEDIA = [t.value for t in ContentType]
# What each channel type can carry, after the seeds' channel table. Content a
# target cannot carry is transcoded (rooms.inbound.transcoding); text longer than
# max_length is cut. ``sms_segments``: cut with ASCII dots and count GSM-7 /
# UCS-2 segments on each delivery.
DEFAULT_CAPABILITIES: dict[str, dict] = {
    ChannelType.SMS: {"media_types": [T.TEXT, T.MEDIA], "max_length": 1600, "sms_segments": True},
    ChannelType.RCS: {"media_types": [T.TEXT, T.RICH, T.MEDIA], "max_length": 3072},
    ChannelType.EMAIL: {"media_types": [T.TEXT, T.RICH, T.MEDIA], "max_length": None},
    ChannelType.WEBSOCKET: {"media_types": [T.TEXT, T.RICH, T.MEDIA, T.LOCATION, T.AUDIO, T.VIDEO], "max_length": None},
    # Meta's Send API limits (the adapter fits rich content to them or falls back to text).
    ChannelType.MESSENGER: {
        "media_types": [T.TEXT, T.RICH, T.MEDIA, T.TEMPLATE],
        "max_length": 2000,
        # The core's limit (rooms.inbound.transcoding): more choices than quick replies hold go as text.
        "max_options": 13,
        "max_quick_replies": 13,
        "max_quick_reply_title": 20,
        "max_buttons": 3,
        "max_button_title": 20,
        "max_media_bytes": 25 * 1024 * 1024,
    },
    # Teams: a message is at most ~28 KB; an Adaptive Card shows at most 6 actions.
    ChannelType.TEAMS: {"media_types": [T.TEXT, T.RICH], "max_length": 28000, "max_options": 6, "max_buttons": 6},
    # Telegram (channels_app.providers.telegram): captions 1024, callback data 64 bytes, 100 buttons a keyboard;
    # files sent by URL up to 20 MB (photos 5 MB), downloaded up to 20 MB.
    ChannelType.TELEGRAM: {
        "media_types": [T.TEXT, T.RICH, T.MEDIA, T.LOCATION, T.AUDIO, T.VIDEO],
        "max_length": 4096,
        "max_caption_length": 1024,
        # No max_options: the adapter puts what a keyboard cannot hold in the message's text.
        "max_buttons": 100,
        "max_callback_data_bytes": 64,
        "max_media_bytes": 20 * 1024 * 1024,
    },
    # WhatsApp Cloud API limits: 3 reply buttons (20-character titles), lists of 10 rows (24), captions
    # of 1024 characters, media up to 16 MB (images 5 MB, documents 100 MB).
    ChannelType.WHATSAPP: {
        "media_types": [T.TEXT, T.RICH, T.MEDIA, T.LOCATION, T.TEMPLATE],
        "max_length": 4096,
        # More choices than a list's rows go as text; up to 3 are reply buttons, up to 10 a list (the adapter).
        "max_options": 10,
        "max_reply_buttons": 3,
        "max_button_title": 20,
        "max_list_rows": 10,
        "max_list_row_title": 24,
        "max_caption_length": 1024,
        "max_media_bytes": 16 * 1024 * 1024,
    },
    ChannelType.WHATSAPP_PERSONAL: {"media_types": [T.TEXT, T.MEDIA, T.AUDIO, T.LOCATION], "max_length": 65536},
    ChannelType.VOICE: {"media_types": [T.AUDIO, T.TEXT], "max_length": None},
    ChannelType.REALTIME_VOICE: {"media_types": [T.AUDIO, T.TEXT], "max_length": None},
    ChannelType.WEBHOOK: {"media_types": [T.TEXT, T.RICH], "max_length": None},
    ChannelType.AI: {"media_types": [T.TEXT, T.RICH], "max_length": None},
    ChannelType.API: {"media_types": _ALL_MEDIA, "max_length": None},
    ChannelType.CONSOLE: {"media_types": _ALL_MEDIA, "max_length": None},
}

# Channel types that are reached through the room's channel-layer group (open
# sockets), not through an outbox delivery. A call hears the room through its
# socket too: its session speaks what the room's frames carry.
PUSH_CHANNEL_TYPES = frozenset(
    {ChannelType.WEBSOCKET, ChannelType.API, ChannelType.CONSOLE, ChannelType.VOICE, ChannelType.REALTIME_VOICE}
)
