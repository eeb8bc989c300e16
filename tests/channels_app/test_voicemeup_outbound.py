"""VoiceMeUp outbound over real HTTP against a fake ``queue_sms`` (``fakes/voicemeup.py``).

As in the Sinch tests, a room is opened on ``hook-in`` and ``vmu-sms`` is
attached at a phone number; each message becomes a Delivery the adapter really
POSTs. The fake checks the form VoiceMeUp takes (credentials, digits-only
numbers, 1000-character messages) and answers in its ``response_details`` shape.
"""

from __future__ import annotations

from django.test import TestCase

from channels_app import resilience
from channels_app.delivery_policy import channel_delivery_policy
from channels_app.providers.voicemeup import MAX_MESSAGE_CHARS, split_message
from rooms.models import Channel, Delivery
from rooms.services import channel_attach
from tests.channels_app.fakes.voicemeup import SEND_PATH, FakeVoiceMeUp
from tests.channels_app.helpers import run_until_settled
from tests.support import make_channel, post_signed

USER = "acme-api"
TOKEN = "vmu-auth-token-31"
IN_SECRET = "in-secret"
RECIPIENT = "+15145559999"
FAST_RETRY = {"max_attempts": 3, "base_delay_seconds": 0.02, "max_delay_seconds": 0.02}


class VoiceMeUpOutboundTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.vmu = cls.enterClassContext(FakeVoiceMeUp(username=USER, auth_token=TOKEN))

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.vmu.reset()
        self._ids = 0

    def open_room(self, extra_config: dict | None = None, *, token: str = TOKEN, max_length: int | None = None) -> None:
        make_channel("hook-in", secrets={"signing_secret": IN_SECRET})
        make_channel(
            "vmu-sms",
            channel_type="sms",
            provider="voicemeup",
            config={
                "username": USER,
                "from": "+15145551234",
                "api_base": self.vmu.url,
                "retry": FAST_RETRY,
                **(extra_config or {}),
            },
            secrets={"auth_token": token, "webhook_token": "t"},
            capabilities={"max_length": max_length} if max_length else {},
        )
        room_id = self.say("opening")["room_id"]
        with self.captureOnCommitCallbacks(execute=True):
            channel_attach(room_id=room_id, channel_id="vmu-sms", address=RECIPIENT)

    def say(self, text: str, *, media: list | None = None) -> dict:
        self._ids += 1
        payload = {"id": f"m-{self._ids}", "sender": "+15550001", "text": text} | ({"media": media} if media else {})
        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(self.client, "/webhooks/hook-in/", payload, IN_SECRET)
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def delivery(self, event_id: str) -> Delivery:
        return Delivery.objects.get(event_id=event_id, channel_id="vmu-sms")


class SendTests(VoiceMeUpOutboundTestCase):
    def test_a_text_is_one_queue_sms_form_with_credentials_and_digit_numbers(self) -> None:
        self.open_room()

        sent = self.say("Your table is ready")

        self.assertEqual(len(self.vmu.requests), 1)
        req = self.vmu.requests[0]
        self.assertEqual((req.method, req.path, req.query), ("POST", SEND_PATH, {}))
        self.assertTrue(req.headers["Content-Type"].startswith("application/x-www-form-urlencoded"))
        self.assertEqual(
            req.form(),
            {
                "username": USER,
                "auth_token": TOKEN,
                "source_number": "15145551234",
                "destination_number": "15145559999",
                "message": "Your table is ready",
            },
        )
        delivery = self.delivery(sent["event_id"])
        self.assertEqual((delivery.status, delivery.provider_message_id), ("queued", self.vmu.queued[0]["hash"]))

    def test_media_is_an_mms_with_the_attachment_url_and_caption(self) -> None:
        self.open_room()

        self.say("menu", media=[{"url": "https://cdn.example.test/menu.jpg", "mime_type": "image/jpeg"}])

        form = self.vmu.requests[0].form()
        self.assertEqual((form["attachment"], form["message"]), ("https://cdn.example.test/menu.jpg", "menu"))

    def test_media_without_caption_sends_no_message_field(self) -> None:
        self.open_room()

        self.say("", media=[{"url": "https://cdn.example.test/menu.jpg", "mime_type": "image/jpeg"}])

        self.assertNotIn("message", self.vmu.requests[0].form())
        self.assertEqual(len(self.vmu.queued), 1)

    def test_long_text_goes_as_several_messages_in_order(self) -> None:
        self.open_room(max_length=3000)
        words = " ".join(f"word{i:04d}" for i in range(300))  # 2699 characters

        sent = self.say(words)

        messages = [q["message"] for q in self.vmu.queued]
        self.assertEqual(len(messages), 3)
        self.assertTrue(all(len(m) <= MAX_MESSAGE_CHARS for m in messages))
        self.assertEqual(" ".join(messages), words)
        delivery = self.delivery(sent["event_id"])
        self.assertEqual(delivery.provider_message_id, ",".join(q["hash"] for q in self.vmu.queued))

    def test_split_message_cuts_at_spaces_and_hard_cuts_words_longer_than_a_message(self) -> None:
        self.assertEqual(split_message("a" * 2500), ["a" * 1000, "a" * 1000, "a" * 500])
        self.assertEqual(split_message("ab cd ef", limit=5), ["ab cd", "ef"])
        self.assertEqual(split_message("   "), [])


class FailureTests(VoiceMeUpOutboundTestCase):
    def breaker_failures(self) -> int:
        policy = channel_delivery_policy(Channel.objects.get(pk="vmu-sms").config).circuit_breaker
        return resilience.breaker_state("vmu-sms", policy).failures

    def test_a_refusal_is_permanent_with_voicemeups_code(self) -> None:
        self.open_room(token="wrong-token")

        delivery = run_until_settled(self.delivery(self.say("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "permission_refused"))
        self.assertEqual(len(self.vmu.requests), 1)
        self.assertEqual(self.breaker_failures(), 0)

    def test_a_5xx_is_retried_and_counted(self) -> None:
        self.vmu.answers = [(502, b"Bad Gateway", {"Content-Type": "text/plain"})]
        self.open_room()

        delivery = self.delivery(self.say("hello")["event_id"])
        self.assertEqual((delivery.status, delivery.error_code), ("pending", "502"))
        self.assertEqual(self.breaker_failures(), 1)

        self.assertEqual(run_until_settled(delivery.pk).status, "queued")
        self.assertEqual(len(self.vmu.queued), 1)

    def test_5xx_until_retries_run_out_is_a_dead_letter(self) -> None:
        self.vmu.answers = [(500, b"", {})] * 5
        self.open_room()

        delivery = run_until_settled(self.delivery(self.say("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.attempts), ("dead", 3))

    def test_an_unreadable_2xx_fails_rather_than_risk_a_double_send(self) -> None:
        self.vmu.answers = [(200, b"<html>maintenance</html>", {"Content-Type": "text/html"})]
        self.open_room()

        delivery = run_until_settled(self.delivery(self.say("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "unreadable_answer"))
        self.assertEqual(len(self.vmu.requests), 1)

    def test_a_lost_answer_then_duplicate_entry_on_retry_counts_as_sent_once(self) -> None:
        self.vmu.refuse_duplicates = True
        self.vmu.drop_after_accept = 1
        self.open_room()

        delivery = self.delivery(self.say("hello")["event_id"])
        self.assertEqual(delivery.status, "pending")
        delivery = run_until_settled(delivery.pk)

        self.assertEqual(delivery.status, "queued")
        self.assertEqual(len(self.vmu.queued), 1)
        self.assertEqual(len(self.vmu.requests), 2)

    def test_duplicate_entry_on_a_first_attempt_is_a_real_refusal(self) -> None:
        self.vmu.refuse_duplicates = True
        self.open_room()
        self.say("same words")

        second = self.delivery(self.say("same words")["event_id"])

        self.assertEqual((second.status, second.error_code), ("failed", "duplicate_entry"))

    def test_a_multi_part_retry_sends_only_the_parts_that_did_not_go(self) -> None:
        self.open_room(max_length=3000)
        words = " ".join(f"word{i:04d}" for i in range(300))
        # Part 1 queued; part 2's first try gets a 503; the retry sends parts 2 and 3 only.
        self.vmu.answers = [None, (503, b"", {})]  # None: let the fake answer for itself

        delivery = self.delivery(self.say(words)["event_id"])
        self.assertEqual(delivery.status, "pending")
        self.assertIn("part 2 of 3", delivery.last_error)
        delivery = run_until_settled(delivery.pk)

        self.assertEqual(delivery.status, "queued")
        self.assertEqual(" ".join(q["message"] for q in self.vmu.queued), words)
        self.assertEqual(len(self.vmu.queued), 3, "no part twice")

    def test_a_channel_without_credentials_fails_without_calling_voicemeup(self) -> None:
        self.open_room({"username": ""})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "not_configured"))
        self.assertEqual(self.vmu.requests, [])
