"""The boundary with neonize: the small client interface the adapter uses, and its real implementation.

Everything of ours (supervisor, event mapping, sends) talks to a
``WhatsAppClient`` and receives neonize's own protobuf events through a
``ClientEvents`` sink. ``NeonizeClient`` is that interface over
``neonize.client.NewClient`` (whatsmeow compiled to a Go shared library,
shipped in the wheel): it is the only module that imports neonize's client.
Tests put a fake client at exactly this boundary, since nothing but WhatsApp's
servers can pair a device, and run the real one against a local proxy that
refuses it (``tests/channels_app/test_neonize_client.py``).

JIDs cross the boundary as strings (``"15551234567@s.whatsapp.net"``,
``"…@lid"``): that is what a binding's address holds.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from neonize.proto import Neonize_pb2 as neonize_proto
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

logger = logging.getLogger(__name__)

Message = wa.Message


def jid_to_str(jid: neonize_proto.JID) -> str:
    """``user@server`` of a JID, without the device part (a person, not one of their phones)."""
    if not jid.User:
        return jid.Server
    return f"{jid.User}@{jid.Server}"


def jid_from_str(value: str) -> neonize_proto.JID:
    """A JID from ``user@server``; a bare number (``+15551234567``) is a phone JID."""
    value = value.strip()
    user, _, server = value.partition("@")
    user = user.split(":", 1)[0].removeprefix("+")
    if not user or not user.replace(".", "").replace("-", "").isalnum():
        raise ValueError(f"not a WhatsApp address: {value!r}")
    return neonize_proto.JID(User=user, Server=server or "s.whatsapp.net", RawAgent=0, Device=0, Integrator=0, IsEmpty=False)


def failure_reason(value: int) -> str:
    """The name of a whatsmeow ``ConnectFailureReason`` (``LOGGED_OUT``, ``TEMP_BANNED``…), or its number."""
    try:
        return neonize_proto.ConnectFailureReason.Name(value)
    except ValueError:
        return f"reason {value}"


class ClientEvents(Protocol):
    """What a client reports, with neonize's own event objects. Called on the client's threads."""

    def on_qr(self, code: str) -> None: ...
    def on_paired(self, account: str) -> None: ...
    def on_pair_failed(self, error: str) -> None: ...
    def on_connected(self) -> None: ...
    def on_disconnected(self) -> None: ...
    def on_logged_out(self, reason: str) -> None: ...
    def on_message(self, event: neonize_proto.Message) -> None: ...
    def on_receipt(self, event: neonize_proto.Receipt) -> None: ...
    def on_chat_presence(self, event: neonize_proto.ChatPresence) -> None: ...


class WhatsAppClient(Protocol):
    """The client calls the adapter makes; a vendor failure raises (the caller classifies it)."""

    def connect(self) -> None:
        """Run the connection: blocks until ``stop()`` or a failure (which raises)."""
        ...

    def stop(self) -> None: ...

    def send_message(self, to: str, message: wa.Message) -> str:
        """Send; returns WhatsApp's message id."""
        ...

    def build_media_message(self, kind: str, data: bytes, *, mime_type: str, caption: str = "", filename: str = "") -> wa.Message:
        """Upload ``data`` and build an image/video/audio/document message (``kind``)."""
        ...

    def download(self, message: wa.Message) -> bytes:
        """The decrypted bytes of a received media message."""
        ...

    def send_chat_presence(self, to: str, *, composing: bool, audio: bool = False) -> None: ...

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None: ...


class ClientFactory(Protocol):
    def __call__(self, *, channel_id: str, database_path: str, events: ClientEvents, proxy: str = "") -> WhatsAppClient: ...


class NeonizeClient:
    """``WhatsAppClient`` over a real ``neonize.client.NewClient`` whose session database is ``database_path``."""

    def __init__(self, *, channel_id: str, database_path: str, events: ClientEvents, proxy: str = "") -> None:
        from neonize.client import NewClient
        from neonize.events import (
            ChatPresenceEv,
            ConnectedEv,
            DisconnectedEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
            ReceiptEv,
        )

        self.channel_id = channel_id
        self.proxy = proxy
        # The Go side keys a client by this handle, and neonize stops it by the handle when the Python object is
        # collected: a restart's new client gets its own, or collecting the old one would stop the new one.
        self._client = NewClient(database_path, uuid=f"{channel_id}-{uuid.uuid4().hex[:12]}")
        self._events = events
        self._client.event.qr(lambda _client, code: events.on_qr(code.decode() if isinstance(code, bytes) else str(code)))
        self._client.event(ConnectedEv)(lambda _client, _ev: events.on_connected())
        self._client.event(DisconnectedEv)(lambda _client, _ev: events.on_disconnected())
        self._client.event(LoggedOutEv)(lambda _client, ev: events.on_logged_out(failure_reason(ev.Reason)))
        self._client.event(PairStatusEv)(self._on_pair_status)
        self._client.event(MessageEv)(lambda _client, ev: events.on_message(ev))
        self._client.event(ReceiptEv)(lambda _client, ev: events.on_receipt(ev))
        self._client.event(ChatPresenceEv)(lambda _client, ev: events.on_chat_presence(ev))

    def _on_pair_status(self, _client: object, event: neonize_proto.PairStatus) -> None:
        if event.Status == neonize_proto.PairStatus.SUCCESS:
            self._events.on_paired(jid_to_str(event.ID))
        else:
            self._events.on_pair_failed(event.Error or "pairing failed")

    def connect(self) -> None:
        from neonize._binder import ProxySettings

        self._client.connect(ProxySettings(proxy_address=self.proxy) if self.proxy else None)

    def stop(self) -> None:
        self._client.stop()

    def send_message(self, to: str, message: wa.Message) -> str:
        return self._client.send_message(jid_from_str(to), message).ID

    def build_media_message(self, kind: str, data: bytes, *, mime_type: str, caption: str = "", filename: str = "") -> wa.Message:
        client = self._client
        if kind == "image":
            return client.build_image_message(data, caption=caption or None)
        if kind == "video":
            return client.build_video_message(data, caption=caption or None)
        if kind == "audio":
            return client.build_audio_message(data, ptt=mime_type.startswith("audio/ogg"))
        return client.build_document_message(data, caption=caption or None, filename=filename or None, mimetype=mime_type)

    def download(self, message: wa.Message) -> bytes:
        return self._client.download_any(message)

    def send_chat_presence(self, to: str, *, composing: bool, audio: bool = False) -> None:
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia

        state = ChatPresence.CHAT_PRESENCE_COMPOSING if composing else ChatPresence.CHAT_PRESENCE_PAUSED
        media = ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if audio else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT
        self._client.send_chat_presence(jid_from_str(to), state, media)

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None:
        from neonize.utils.enum import ReceiptType

        self._client.mark_read(*message_ids, chat=jid_from_str(chat), sender=jid_from_str(sender), receipt=ReceiptType.READ)


def neonize_client(*, channel_id: str, database_path: str, events: ClientEvents, proxy: str = "") -> WhatsAppClient:
    """The production ``ClientFactory``."""
    return NeonizeClient(channel_id=channel_id, database_path=database_path, events=events, proxy=proxy)
