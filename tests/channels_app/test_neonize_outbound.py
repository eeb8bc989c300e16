"""WhatsApp Personal outbound: a room's message reaches the customer through the channel's running client.

The delivery goes the real way (``delivery_attempt`` on commit → the
provider's ``send``); the client is the supervisor's, here with the fake
neonize client connected. In-process the provider calls the runner; across
processes (a Celery worker and ``run_whatsapp_personal``) the request goes
through Redis (db ``9`` here) to the supervisor's send thread and back.
Receipts from WhatsApp update the delivery; our side's typing and reading go
back to WhatsApp.
"""

from __future__ import annotations

import threading

from django.test import override_settings
from neonize.proto import Neonize_pb2 as neonize_proto

from channels_app.models import WhatsAppPersonalState as State
from channels_app.providers import get_provider
from channels_app.providers.neonize import outbox
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Channel, Delivery
from rooms.realtime import broadcast
from rooms.services import channel_attach
from tests.channels_app.test_neonize_inbound import CUSTOMER, JPEG, ConnectedCase, fixture
from tests.channels_app.test_neonize_supervisor import CHANNEL, in_state, wait_for
from tests.support import FakeHTTPServer, make_channel

REDIS_DB = "redis://127.0.0.1:6379/9"


class OutboundCase(ConnectedCase):
    def setUp(self) -> None:
        super().setUp()
        outbox.register_local_runner(self.runner_)
        self.addCleanup(outbox.unregister_local_runner, self.runner_)
        make_channel("hook-in", secrets={"signing_secret": "in-secret"})
        self.inbound = self.receive(fixture("text.json"))
        self.room_id = self.inbound.room_id
        channel_attach(room_id=self.room_id, channel_id="hook-in", address="crm-1")
        self._n = 0

    def say(self, content: dict | str) -> Delivery:
        """A message from another channel into the room; its delivery to WhatsApp after the first attempt."""
        self._n += 1
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        result = process_inbound(
            InboundMessage(
                channel_id="hook-in", sender="crm-1", content=content, room_id=self.room_id, provider_message_id=f"m-{self._n}"
            )
        )
        return Delivery.objects.get(event_id=result.event_id, channel_id=CHANNEL)


class SendTests(OutboundCase):
    def test_a_text_reaches_the_chat_and_the_delivery_keeps_whatsapps_message_id(self) -> None:
        delivery = self.say("Your order has shipped")
        [(to, message)] = self.factory.sent
        self.assertEqual((to, message.conversation), (CUSTOMER, "Your order has shipped"))
        self.assertEqual(delivery.status, "sent")
        self.assertRegex(delivery.provider_message_id, r"^3EB0[0-9A-F]{16}$")
        self.assertEqual(delivery.attempts, 1)

    def test_receipts_from_the_customer_mark_the_delivery_delivered_then_read(self) -> None:
        delivery = self.say("Your order has shipped")
        for kind, expected in (("DELIVERED", "delivered"), ("READ", "read")):
            receipt = fixture("receipt_read.json", neonize_proto.Receipt)
            receipt.Type = neonize_proto.Receipt.ReceiptType.Value(kind)
            receipt.MessageIDs[:] = [delivery.provider_message_id]
            self.factory.current.emit("on_receipt", receipt)
            wait_for(lambda e=expected: Delivery.objects.get(pk=delivery.pk).status == e, what=expected)

    def test_a_location_is_a_whatsapp_location(self) -> None:
        self.say({"type": "location", "latitude": 45.5, "longitude": -73.56, "label": "Depot"})
        [(_, message)] = self.factory.sent
        location = message.locationMessage
        self.assertEqual((location.degreesLatitude, location.degreesLongitude, location.name), (45.5, -73.56, "Depot"))

    def test_a_picture_is_fetched_uploaded_through_the_client_and_sent_with_its_caption(self) -> None:
        host = self.enterContext(
            FakeHTTPServer(
                handler=lambda req: (200, JPEG, {"Content-Type": "image/jpeg"}) if req.path == "/p.jpg" else (404, b"", {})
            )
        )
        delivery = self.say({"type": "media", "url": f"{host.url}/p.jpg", "mime_type": "image/jpeg", "caption": "Your parcel"})
        self.assertEqual(self.factory.uploads, [("image", JPEG, "image/jpeg")])
        [(_, message)] = self.factory.sent
        self.assertEqual((message.imageMessage.caption, message.imageMessage.fileLength), ("Your parcel", len(JPEG)))
        self.assertEqual(delivery.status, "sent")

    def test_while_the_client_is_not_connected_the_delivery_waits_for_a_retry(self) -> None:
        self.factory.current.emit("on_disconnected")
        wait_for(in_state(State.BACKING_OFF))
        delivery = self.say("are you there?")
        self.assertEqual(delivery.status, "pending")
        self.assertIn("not connected", delivery.last_error)
        self.assertEqual(self.factory.sent, [])

    def test_a_send_the_vendor_refuses_is_retried_not_lost(self) -> None:
        self.factory.send_error = RuntimeError("SendMessageError: failed to send message: websocket not connected")
        delivery = self.say("hello")
        self.assertEqual(delivery.status, "pending")
        self.assertIn("websocket not connected", delivery.last_error)

    def test_an_address_that_is_no_whatsapp_jid_fails_at_once(self) -> None:
        delivery = self.say("hello")
        delivery.recipient = "not a number!"
        result = get_provider("neonize").send(Channel.objects.get(pk=CHANNEL), delivery)
        self.assertFalse(result.ok)
        self.assertFalse(result.retryable)
        self.assertFalse(result.sick)


class OurSideToWhatsAppTests(OutboundCase):
    def test_our_typing_shows_as_composing_on_the_customers_phone(self) -> None:
        broadcast.publish_typing(self.room_id, "agent-demo", typing=True)
        self.factory.wait(lambda: self.factory.presences)
        broadcast.publish_typing(self.room_id, "agent-demo", typing=False)
        self.factory.wait(lambda: len(self.factory.presences) == 2)
        self.assertEqual(self.factory.presences, [(CUSTOMER, True), (CUSTOMER, False)])

    def test_our_side_reading_the_room_marks_the_customers_messages_read_once(self) -> None:
        second = self.receive(fixture("location.json"))
        broadcast.publish_read_receipt(self.room_id, "operator-1", second.seq)
        self.factory.wait(lambda: self.factory.reads)
        self.assertEqual(self.factory.reads, [(CUSTOMER, [self.inbound.provider_message_id, second.provider_message_id])])
        # Reading them again sends nothing new; the customer's own reads are never echoed back.
        broadcast.publish_read_receipt(self.room_id, "operator-1", second.seq)
        third = self.receive(fixture("text.json", Info__ID="3ATHIRD0000000000001"))
        broadcast.publish_read_receipt(self.room_id, self.inbound.source_participant_id, third.seq)
        broadcast.publish_typing(self.room_id, "agent-demo", typing=True)
        self.factory.wait(lambda: self.factory.presences)
        self.assertEqual(len(self.factory.reads), 1)


@override_settings(REDIS_URL=REDIS_DB)
class AcrossProcessesTests(OutboundCase):
    """The worker's ``send`` and the supervisor in different processes: the request and its answer go through Redis."""

    def setUp(self) -> None:
        super().setUp()
        outbox.unregister_local_runner(self.runner_)  # as in a Celery worker: no runner here
        r = outbox._redis(REDIS_DB)
        r.delete(outbox.queue_key(CHANNEL))
        self.stop = threading.Event()
        self.server = threading.Thread(target=outbox.serve_sends, args=(self.runner_, self.stop), daemon=True)
        self.server.start()
        self.addCleanup(self.server.join, 5)
        self.addCleanup(self.stop.set)

    def test_a_delivery_goes_through_the_queue_to_the_supervisors_client_and_its_retry_sends_nothing_twice(self) -> None:
        delivery = self.say("Sent from a worker")
        self.assertEqual(delivery.status, "sent")
        [(to, message)] = self.factory.sent
        self.assertEqual((to, message.conversation), (CUSTOMER, "Sent from a worker"))
        # A retry of the same delivery (its answer lost): the first message id, no second message.
        again = get_provider("neonize").send(Channel.objects.get(pk=CHANNEL), delivery)
        self.assertTrue(again.ok)
        self.assertEqual(again.provider_message_id, delivery.provider_message_id)
        self.assertEqual(len(self.factory.sent), 1)

    def test_with_no_supervisor_serving_the_channel_the_send_fails_retryably(self) -> None:
        self.stop.set()
        self.server.join(5)
        answer = outbox.request_send(
            "wa-nobody", {"key": "k1", "recipient": CUSTOMER, "content": {"type": "text", "body": "x"}}, timeout=1
        )
        self.assertFalse(answer["ok"])
        self.assertTrue(answer["retryable"])
        self.assertIn("no WhatsApp Personal supervisor answered", answer["error"])
        # The request expired in the queue: a supervisor that comes up later drops it unsent.
        raw = outbox._redis(REDIS_DB).lpop(outbox.queue_key("wa-nobody"))
        self.assertIsNotNone(raw)
