"""WhatsApp Personal inbound: neonize's own event objects, from the supervisor's client, through ``process_inbound``.

The events are neonize's protobuf classes, read from the fixtures beside the
adapter (``channels_app/providers/neonize/fixtures``); the fake client hands
them to the running supervisor from another thread, as neonize's Go side
does, and serves the media download (WhatsApp's media are encrypted blobs
only the client can fetch). Files land in a temporary ``MEDIA_ROOT``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from django.core.files.storage import default_storage
from google.protobuf.json_format import ParseDict
from neonize.proto import Neonize_pb2 as neonize_proto

from channels_app.models import WhatsAppPersonalState as State
from rooms.models import ChannelBinding, RoomEvent
from rooms.realtime import broadcast
from tests.channels_app.helpers import use_temporary_media_root
from tests.channels_app.test_neonize_supervisor import CHANNEL, RunnerCase, in_state, wait_for

FIXTURES = Path(__file__).resolve().parents[2] / "channels_app" / "providers" / "neonize" / "fixtures"
CUSTOMER = "15557654321@s.whatsapp.net"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 60
OGG = b"OggS\x00\x02" + b"\x00" * 38


def fixture(name: str, kind=neonize_proto.Message, **changes):
    data = json.loads((FIXTURES / name).read_text())
    event = ParseDict(data, kind())
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split("__")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return event


class ConnectedCase(RunnerCase):
    """A paired, connected channel, its supervisor running."""

    def setUp(self) -> None:
        super().setUp()
        self.media_root = use_temporary_media_root(self, public_base_url="https://roomkit.example.test")
        self.runner_ = self.runner()
        wait_for(in_state(State.PAIRING))
        self.factory.current.scan()
        wait_for(in_state(State.CONNECTED))
        self.assertTrue(self.runner_.wait_connected(5))

    def receive(self, event) -> RoomEvent:
        self.factory.current.emit("on_message", event)
        return wait_for(
            lambda: RoomEvent.objects.filter(source_channel_id=CHANNEL, provider_message_id=event.Info.ID).first(),
            what=f"message {event.Info.ID} stored",
        )


class InboundMessageTests(ConnectedCase):
    def test_a_text_opens_a_room_for_the_chat_with_the_senders_push_name(self) -> None:
        event = self.receive(fixture("text.json"))
        self.assertEqual(event.content, {"type": "text", "body": "Hi, is my order on its way?"})
        self.assertEqual(event.metadata["whatsapp"]["chat"], CUSTOMER)
        binding = ChannelBinding.objects.get(room_id=event.room_id, channel_id=CHANNEL)
        self.assertEqual(binding.address, CUSTOMER)
        self.assertEqual(binding.participant.display_name, "Dana Lee")

    def test_a_repeated_message_id_stores_nothing_new(self) -> None:
        first = self.receive(fixture("text.json"))
        self.factory.current.emit("on_message", fixture("text.json"))
        # Events are handled in order: once the next message is stored, the repeat has been handled.
        self.receive(fixture("location.json"))
        self.assertEqual(RoomEvent.objects.filter(source_channel_id=CHANNEL).count(), 2)
        self.assertEqual(RoomEvent.objects.filter(provider_message_id=first.provider_message_id).count(), 1)

    def test_an_extended_text_is_text(self) -> None:
        event = fixture("text.json", Info__ID="3AEXTENDED0001")
        event.Message.Clear()
        event.Message.extendedTextMessage.text = "see https://example.test/order/1003"
        self.assertEqual(self.receive(event).content["body"], "see https://example.test/order/1003")

    def test_a_photo_is_downloaded_through_the_client_and_stored_with_its_caption(self) -> None:
        event = fixture("image.json")
        self.factory.media[event.Message.imageMessage.fileSHA256] = JPEG
        stored = self.receive(event)
        content = stored.content
        self.assertEqual((content["type"], content["mime_type"], content["size"]), ("media", "image/jpeg", len(JPEG)))
        self.assertEqual(content["caption"], "The box arrived like this")
        name = content["url"].removeprefix("https://roomkit.example.test/media/")
        self.assertRegex(name, r"^inbound/neonize/\d{4}/\d{2}/[0-9a-f]{32}\.jpg$")
        with default_storage.open(name) as handle:
            self.assertEqual(handle.read(), JPEG)

    def test_a_voice_note_is_audio_content(self) -> None:
        event = fixture("voice_note.json")
        self.factory.media[event.Message.audioMessage.fileSHA256] = OGG
        stored = self.receive(event)
        self.assertEqual(stored.content["type"], "audio")
        self.assertEqual((stored.content["mime_type"], stored.content["duration_ms"]), ("audio/ogg", 7000))
        self.assertTrue(stored.metadata["whatsapp"]["voice_note"])
        self.assertTrue(stored.content["url"].endswith(".ogg"))

    def test_a_location_keeps_its_name_and_address(self) -> None:
        stored = self.receive(fixture("location.json"))
        self.assertEqual(
            stored.content,
            {"type": "location", "latitude": 45.5019, "longitude": -73.5674, "label": "Place d'Armes", "address": "Montréal, QC"},
        )

    def test_media_that_cannot_be_downloaded_keep_the_message_and_say_so(self) -> None:
        stored = self.receive(fixture("image.json"))  # the fake WhatsApp has no such media: 404
        self.assertEqual(stored.content["type"], "composite")
        self.assertEqual(
            stored.content["parts"],
            [
                {"type": "text", "body": "The box arrived like this"},
                {"type": "text", "body": "[image/jpeg could not be retrieved]"},
            ],
        )
        self.assertEqual(stored.metadata["media_errors"][0]["error"], "download_failed")
        self.assertFalse(list(self.media_root.rglob("*.jpg")))

    def test_group_messages_status_updates_and_our_own_messages_are_not_conversations(self) -> None:
        self.factory.current.emit("on_message", fixture("text.json", Info__ID="G1", Info__MessageSource__IsGroup=True))
        self.factory.current.emit("on_message", fixture("text.json", Info__ID="ME1", Info__MessageSource__IsFromMe=True))
        status = fixture("text.json", Info__ID="ST1")
        status.Info.MessageSource.Chat.User, status.Info.MessageSource.Chat.Server = "status", "broadcast"
        self.factory.current.emit("on_message", status)
        self.receive(fixture("location.json"))
        self.assertEqual(
            list(RoomEvent.objects.filter(source_channel_id=CHANNEL).values_list("provider_message_id", flat=True)),
            [fixture("location.json").Info.ID],
        )


class TypingTests(ConnectedCase):
    def test_the_customer_typing_on_whatsapp_is_typing_in_the_room(self) -> None:
        room_id = self.receive(fixture("text.json")).room_id
        frames: list[broadcast.EphemeralEvent] = []
        seen = threading.Event()

        def collect(event: broadcast.EphemeralEvent) -> None:
            frames.append(event)
            seen.set()

        subscription = broadcast.subscribe_room(room_id, collect)
        self.addCleanup(broadcast.unsubscribe_room, subscription)
        self.factory.current.emit("on_chat_presence", fixture("chat_presence.json", neonize_proto.ChatPresence))
        self.assertTrue(seen.wait(10))
        binding = ChannelBinding.objects.get(room_id=room_id, channel_id=CHANNEL)
        self.assertEqual((frames[0].kind, frames[0].participant_id), ("typing_start", binding.participant_id))
        self.assertEqual(frames[0].data["display_name"], "Dana Lee")
