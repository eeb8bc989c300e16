"""A fake of neonize's client at the boundary our adapter uses (``channels_app.providers.neonize.client.WhatsAppClient``).

WhatsApp's servers are the only thing that can pair a device or deliver a
message, so the vendor's client is replaced here, and only it: the
supervisor, the event mapping, the session store and the sends around it are
ours and run for real. The fake behaves as whatsmeow does where our code
depends on it:

- ``connect()`` blocks until ``stop()``; a scripted failure raises instead
  (neonize raises ``NeonizeError`` with whatsmeow's text for a failed dial);
- the session is a real sqlite database at the path it is given: without a
  device row it asks for pairing (a QR code event) and writes the device when
  the test "scans"; with one (a restored session) it connects straight away;
- events arrive on another thread than the supervisor's, as neonize's
  callbacks do, and are neonize's own protobuf objects;
- sends, media uploads and downloads, chat presence and read marks are recorded.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from channels_app.providers.neonize.client import ClientEvents, jid_from_str

ACCOUNT = "15550001111@s.whatsapp.net"
QR_CODE = "2@Xk2l0pQ7,Zs9aQm2w1Yb6+8nQ=,kR0xN3b8vF1=,AbCdEfGh1234="


def _device(path: str) -> str | None:
    db = sqlite3.connect(path)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT PRIMARY KEY, noise_key BLOB)")
        row = db.execute("SELECT jid FROM whatsmeow_device").fetchone()
        db.commit()
        return row[0] if row else None
    finally:
        db.close()


@dataclass
class FakeClientFactory:
    """Makes ``FakeWhatsAppClient``s; ``script`` says how each ``connect()`` ends (an exception raises, else it runs)."""

    script: list[BaseException | None] = field(default_factory=list)
    clients: list[FakeWhatsAppClient] = field(default_factory=list)
    # Media the fake WhatsApp holds, by the message's fileSHA256: what ``download`` returns.
    media: dict[bytes, bytes] = field(default_factory=dict)
    sent: list[tuple[str, wa.Message]] = field(default_factory=list)
    uploads: list[tuple[str, bytes, str]] = field(default_factory=list)
    presences: list[tuple[str, bool]] = field(default_factory=list)
    reads: list[tuple[str, list[str]]] = field(default_factory=list)
    send_error: BaseException | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __call__(self, *, channel_id: str, database_path: str, events: ClientEvents, proxy: str = "") -> FakeWhatsAppClient:
        client = FakeWhatsAppClient(self, channel_id, database_path, events)
        with self.changed:
            self.clients.append(client)
            self.changed.notify_all()
        return client

    @property
    def current(self) -> FakeWhatsAppClient:
        return self.clients[-1]

    def wait(self, predicate, timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError("the fake WhatsApp client never reached the expected state")

    def message_id(self) -> str:
        return f"3EB0{next(self._ids):016X}"


class FakeWhatsAppClient:
    def __init__(self, factory: FakeClientFactory, channel_id: str, database_path: str, events: ClientEvents) -> None:
        self.factory = factory
        self.channel_id = channel_id
        self.database_path = database_path
        self.events = events
        self.stopped = threading.Event()
        self.connected = threading.Event()
        self.restored_account: str | None = None
        self.connect_thread: threading.Thread | None = None

    def _on_go_thread(self, fn, *args) -> None:
        """Call back from a thread of its own, as neonize's Go side does."""
        thread = threading.Thread(target=fn, args=args)
        thread.start()
        thread.join()

    def connect(self) -> None:
        with self.factory.changed:
            outcome = self.factory.script.pop(0) if self.factory.script else None
        if outcome is not None:
            raise outcome
        self.restored_account = _device(self.database_path)
        if self.restored_account:
            self._connected()
        else:
            self._on_go_thread(self.events.on_qr, QR_CODE)
        self.stopped.wait()

    def scan(self, account: str = ACCOUNT) -> None:
        """The phone scans the QR code: the device is stored and the client connects."""
        db = sqlite3.connect(self.database_path)
        with db:
            db.execute("INSERT INTO whatsmeow_device VALUES (?, ?)", (account, b"\x01" * 32))
        db.close()
        self._on_go_thread(self.events.on_paired, account)
        self._connected()

    def _connected(self) -> None:
        self.connected.set()
        self._on_go_thread(self.events.on_connected)
        with self.factory.changed:
            self.factory.changed.notify_all()

    def emit(self, name: str, *args: Any) -> None:
        """Deliver an event (``on_message``, ``on_receipt``…) from a Go-side thread."""
        self._on_go_thread(getattr(self.events, name), *args)

    def stop(self) -> None:
        self.stopped.set()

    # --- calls the adapter makes -----------------------------------------------------------

    def send_message(self, to: str, message: wa.Message) -> str:
        jid_from_str(to)
        if self.factory.send_error is not None:
            raise self.factory.send_error
        with self.factory.changed:
            self.factory.sent.append((to, message))
            self.factory.changed.notify_all()
        return self.factory.message_id()

    def build_media_message(self, kind: str, data: bytes, *, mime_type: str, caption: str = "", filename: str = "") -> wa.Message:
        self.factory.uploads.append((kind, data, mime_type))
        common = {"mimetype": mime_type, "fileLength": len(data), "directPath": "/v/t62.7118-24/fake", "mediaKey": b"k" * 32}
        if kind == "image":
            return wa.Message(imageMessage=wa.ImageMessage(caption=caption, **common))
        if kind == "video":
            return wa.Message(videoMessage=wa.VideoMessage(caption=caption, **common))
        if kind == "audio":
            return wa.Message(audioMessage=wa.AudioMessage(**common))
        return wa.Message(documentMessage=wa.DocumentMessage(caption=caption, fileName=filename, **common))

    def download(self, message: wa.Message) -> bytes:
        for name in ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage"):
            if message.HasField(name):
                digest = getattr(message, name).fileSHA256
                if digest in self.factory.media:
                    return self.factory.media[digest]
                raise RuntimeError("DownloadError: failed to download media: 404 Not Found")
        raise RuntimeError("DownloadError: message has no media")

    def send_chat_presence(self, to: str, *, composing: bool, audio: bool = False) -> None:
        with self.factory.changed:
            self.factory.presences.append((to, composing))
            self.factory.changed.notify_all()

    def mark_read(self, *, chat: str, sender: str, message_ids: list[str]) -> None:
        with self.factory.changed:
            self.factory.reads.append((chat, list(message_ids)))
            self.factory.changed.notify_all()
