"""The team's typing and reading in the inbox, shown on the customer's messaging app (channels_app.activity).

Through the inbox's own endpoints (an operator typing, then reading), the
relay task and each adapter's real HTTP call to the fake vendor: Messenger's
sender actions, WhatsApp's read receipt with its typing indicator, Telegram's
"typing…" chat action. What a platform cannot show is not sent.
"""

from __future__ import annotations

from rooms.models import Room
from tests.channels_app.test_messenger import MessengerTestCase
from tests.channels_app.test_telegram_support import CHAT, TelegramTestCase
from tests.channels_app.test_whatsapp_support import WhatsAppTestCase
from tests.console.helpers import csrf_post, logged_in, operator

INBOX = "/admin/inbox/"


class _Operator:
    def operator_does(self, room_id: str, *steps: tuple[str, dict]) -> None:
        client = logged_in(operator())
        for action, data in steps:
            with self.captureOnCommitCallbacks(execute=True):
                response = csrf_post(client, f"{INBOX}c/{room_id}/{action}/", data)
            self.assertIn(response.status_code, (200, 204), response.content)


class MessengerActivityTests(_Operator, MessengerTestCase):
    def test_typing_and_reading_are_sender_actions_to_the_customer(self) -> None:
        room_id = self.customer_writes("hi")
        last = Room.objects.get(pk=room_id).last_seq
        self.operator_does(room_id, ("typing", {"state": "start"}), ("typing", {"state": "stop"}), ("read", {"seq": str(last)}))
        actions = [b["sender_action"] for b in self.graph.messages.values() if "sender_action" in b]
        self.assertEqual(actions, ["typing_on", "typing_off", "mark_seen"])
        self.assertEqual(
            {r.headers["authorization"] for r in self.graph.requests if r.method == "POST"}, {f"Bearer {self.graph.page_token}"}
        )


class WhatsAppActivityTests(_Operator, WhatsAppTestCase):
    def test_typing_is_the_typing_indicator_and_reading_the_read_receipt_of_the_customers_last_message(self) -> None:
        self.customer_writes("first")
        room_id = self.customer_writes("second")
        last = Room.objects.get(pk=room_id).last_seq
        self.operator_does(room_id, ("typing", {"state": "start"}), ("typing", {"state": "stop"}), ("read", {"seq": str(last)}))
        wamid = self.graph.read_receipts[0]["message_id"]
        self.assertEqual(
            self.graph.read_receipts,
            [
                {"messaging_product": "whatsapp", "status": "read", "message_id": wamid, "typing_indicator": {"type": "text"}},
                {"messaging_product": "whatsapp", "status": "read", "message_id": wamid},
            ],
        )
        self.assertEqual(wamid, "wamid.IN2")  # the latest of the customer's messages (earlier ones are read with it)
        self.assertEqual(self.graph.messages, {})  # no message was sent


class TelegramActivityTests(_Operator, TelegramTestCase):
    def test_typing_is_the_typing_chat_action_and_nothing_else_is_sent(self) -> None:
        self.make_telegram_channel()
        room_id = self.open_room()
        last = Room.objects.get(pk=room_id).last_seq
        self.operator_does(room_id, ("typing", {"state": "start"}), ("typing", {"state": "stop"}), ("read", {"seq": str(last)}))
        self.assertEqual(self.telegram.chat_actions, [{"chat_id": CHAT, "action": "typing"}])
        self.assertEqual(self.telegram.sent, [])
