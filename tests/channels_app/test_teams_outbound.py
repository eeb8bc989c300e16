"""Outbound Teams deliveries: a client-credentials token, then the Bot Connector, both fake and over real HTTP.

A conversation opened by a signed inbound activity gets a message from another
channel of its room (``hook-in``); the delivery goes through
``delivery_attempt`` and the adapter really sends: the token endpoint checks
the app's credentials and scope, the Connector checks the token it issued,
the path (the conversation id, encoded) and the activity.
"""

from __future__ import annotations

import threading
from urllib.parse import quote

from channels_app.providers.teams.cards import ADAPTIVE_CARD
from channels_app.providers.teams.tokens import ClientCredentialsTokens, bot_tokens
from rooms.enums import DeliveryStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Channel, ChannelBinding, Delivery
from rooms.services import channel_attach
from tests.channels_app.fakes.teams import fixture
from tests.channels_app.test_teams_support import CHANNEL, TeamsTestCase
from tests.support import make_channel

PERSONAL = fixture("message_personal.json")["conversation"]["id"]
USER = fixture("message_personal.json")["from"]["id"]
BOT = fixture("message_personal.json")["recipient"]["id"]


class OutboundTestCase(TeamsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.post_activity(self.activity("message_personal.json")).json()["room_id"]
        make_channel("hook-in", secrets={"signing_secret": "in-secret"})
        with self.captureOnCommitCallbacks(execute=True):
            channel_attach(room_id=self.room_id, channel_id="hook-in", address="crm-1")
        self.bf.reset()  # what the inbound leg fetched (keys) is not the outbound's
        self._n = 0

    def say(self, content: dict | str) -> Delivery:
        """A message from hook-in into the room; returns its Teams delivery after the first attempt."""
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        self._n += 1
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(channel_id="hook-in", sender="crm-1", content=content, provider_message_id=f"m-{self._n}")
            )
        return Delivery.objects.get(event_id=result.event_id, channel_id=CHANNEL)

    def sent_path(self) -> str:
        return f"/v3/conversations/{quote(PERSONAL, safe='')}/activities"


class SendTests(OutboundTestCase):
    def test_text_goes_to_the_conversation_with_the_token_and_the_delivery_records_the_activity_id(self) -> None:
        delivery = self.say("Your order ships today")

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        [token_request] = [r for r in self.bf.requests if r.path == "/token"]
        self.assertEqual(
            token_request.form(),
            {
                "grant_type": "client_credentials",
                "client_id": self.bf.app_id,
                "client_secret": self.bf.app_password,
                "scope": "https://api.botframework.com/.default",
            },
        )
        [sent] = self.bf.connector_requests()
        self.assertEqual(sent.path, self.sent_path())
        self.assertIn(sent.headers["authorization"][7:], self.bf.live_tokens)
        self.assertEqual(
            sent.json(),
            {
                "type": "message",
                "from": {"id": BOT, "name": "RoomKit Bot"},
                "conversation": {"id": PERSONAL},
                "recipient": {"id": USER, "name": "Megan Bowen"},
                "text": "Your order ships today",
                "textFormat": "plain",
            },
        )
        self.assertTrue(delivery.provider_message_id.startswith("1:"))
        self.assertIsNotNone(delivery.sent_at)

    def test_rich_content_is_an_adaptive_card(self) -> None:
        content = {
            "type": "rich",
            "body": "Which order?",
            "buttons": [{"title": "Order 1003", "payload": "order:1003"}, {"title": "Help", "url": "https://example.com/help"}],
            "quick_replies": ["Talk to a person"],
            "cards": [{"title": "Blue mug", "description": "12 oz", "image_url": "https://example.com/mug.png"}],
        }

        delivery = self.say(content)

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        [(conversation, activity)] = self.bf.activities
        self.assertEqual(conversation, PERSONAL)
        self.assertNotIn("text", activity)
        self.assertEqual(activity["summary"], "Which order?")
        [attachment] = activity["attachments"]
        self.assertEqual(attachment["contentType"], ADAPTIVE_CARD)
        card = attachment["content"]
        self.assertEqual((card["type"], card["version"]), ("AdaptiveCard", "1.4"))
        self.assertEqual(card["body"][0], {"type": "TextBlock", "text": "Which order?", "wrap": True})
        container = card["body"][1]
        self.assertEqual(container["type"], "Container")
        self.assertEqual([i["type"] for i in container["items"]], ["Image", "TextBlock", "TextBlock"])
        self.assertEqual(container["items"][1]["text"], "Blue mug")
        submit, open_url, quick = card["actions"]
        self.assertEqual(submit["type"], "Action.Submit")
        self.assertEqual(submit["data"]["roomkit"], {"title": "Order 1003", "payload": "order:1003"})
        self.assertEqual(submit["data"]["msteams"], {"type": "messageBack", "displayText": "Order 1003", "text": "Order 1003"})
        self.assertEqual(open_url, {"type": "Action.OpenUrl", "title": "Help", "url": "https://example.com/help"})
        self.assertEqual(quick["data"]["roomkit"], {"title": "Talk to a person", "payload": "Talk to a person"})

    def test_more_choices_than_a_card_shows_go_as_text_listing_them_all(self) -> None:
        delivery = self.say({"type": "rich", "body": "Pick", "quick_replies": [f"option {i}" for i in range(10)]})

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        activity = self.bf.activities[0][1]
        self.assertNotIn("attachments", activity)  # the core's max_options (6): no option is dropped
        self.assertIn("option 0", activity["text"])
        self.assertIn("option 9", activity["text"])

    def test_a_card_never_shows_more_actions_than_the_channel_allows(self) -> None:
        Channel.objects.filter(pk=CHANNEL).update(capabilities={"max_options": 5, "max_buttons": 3})
        from rooms.selectors import clear_channel_cache

        clear_channel_cache()
        delivery = self.say({"type": "rich", "body": "Pick", "quick_replies": [f"option {i}" for i in range(5)]})

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(len(self.bf.activities[0][1]["attachments"][0]["content"]["actions"]), 3)

    def test_media_reaches_teams_as_its_text(self) -> None:
        self.say(
            {"type": "media", "url": "https://example.com/receipt.pdf", "mime_type": "application/pdf", "caption": "receipt"}
        )

        self.assertEqual(self.bf.activities[0][1]["text"], "[Media: https://example.com/receipt.pdf] receipt")

    def test_a_proactive_message_uses_the_reference_kept_on_the_binding(self) -> None:
        # Days later, the reference is all there is: no inbound activity in this request.
        binding = ChannelBinding.objects.get(room_id=self.room_id, channel_id=CHANNEL)
        self.assertEqual(binding.metadata["teams"]["service_url"], self.bf.service_url)

        delivery = self.say("A reminder about your order")

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)

    def test_a_binding_without_a_reference_falls_back_to_the_conversations_last_activity(self) -> None:
        ChannelBinding.objects.filter(room_id=self.room_id, channel_id=CHANNEL).update(metadata={})

        delivery = self.say("still reachable")

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)

    def test_a_conversation_the_bot_never_heard_from_fails_at_once(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            channel_attach(room_id=self.room_id, channel_id=CHANNEL, address="a:never-seen")
        self._n += 1
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(InboundMessage(channel_id="hook-in", sender="crm-1", text="hello?", provider_message_id="x"))
        delivery = Delivery.objects.get(event_id=result.event_id, recipient="a:never-seen")

        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "no_conversation_reference"))
        self.assertFalse([a for a in self.bf.activities if a[0] == "a:never-seen"])


class TokenTests(OutboundTestCase):
    def test_one_token_serves_many_sends(self) -> None:
        for i in range(4):
            self.assertEqual(self.say(f"message {i}").status, DeliveryStatus.SENT)

        self.assertEqual(self.bf.count("POST", "/token"), 1)
        self.assertEqual(len(self.bf.activities), 4)

    def test_threads_asking_at_once_share_one_fetch(self) -> None:
        tokens = ClientCredentialsTokens()
        got: list[str] = []
        start = threading.Barrier(8)

        def ask() -> None:
            start.wait()
            got.append(tokens.token(token_url=self.bf.token_url, app_id=self.bf.app_id, app_password=self.bf.app_password))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        self.assertEqual(len(set(got)), 1)
        self.assertEqual(self.bf.count("POST", "/token"), 1)

    def test_a_token_near_its_expiry_is_renewed(self) -> None:
        now = [0.0]
        tokens = ClientCredentialsTokens(clock=lambda: now[0])
        args = {"token_url": self.bf.token_url, "app_id": self.bf.app_id, "app_password": self.bf.app_password}
        first = tokens.token(**args)
        now[0] = 3600 - 600
        self.assertEqual(tokens.token(**args), first)
        now[0] = 3600 - 200  # within five minutes of expiry
        self.assertNotEqual(tokens.token(**args), first)
        self.assertEqual(self.bf.count("POST", "/token"), 2)

    def test_a_401_from_the_connector_fetches_a_new_token_once_and_sends(self) -> None:
        self.say("first")
        self.bf.revoke_tokens()

        delivery = self.say("after the token was revoked")

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(self.bf.count("POST", "/token"), 2)
        self.assertEqual([r.path for r in self.bf.connector_requests()], [self.sent_path()] * 3)

    def test_a_second_401_fails_the_delivery_without_retrying_forever(self) -> None:
        self.bf.next_answers.extend([(401, {"message": "denied"}, {}), (401, {"message": "denied"}, {})])

        delivery = self.say("denied twice")

        self.assertEqual(delivery.status, DeliveryStatus.FAILED, delivery.last_error)
        self.assertEqual(delivery.error_code, "401")
        self.assertEqual(self.bf.count("POST", "/token"), 2)
        self.assertEqual(len(self.bf.connector_requests()), 2)

    def test_wrong_app_password_fails_at_once_and_never_shows_it(self) -> None:
        self.channel.set_secrets({"app_password": "wrong-password"})
        self.channel.save()
        from rooms.selectors import clear_channel_cache

        clear_channel_cache()

        delivery = self.say("with a bad password")

        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "token"))
        self.assertIn("invalid_client", delivery.last_error)
        self.assertNotIn("wrong-password", delivery.last_error)
        self.assertFalse(self.bf.connector_requests())

    def test_the_module_cache_is_what_the_adapter_uses(self) -> None:
        self.say("one")
        token = bot_tokens.token(token_url=self.bf.token_url, app_id=self.bf.app_id, app_password=self.bf.app_password)
        self.assertIn(token, self.bf.live_tokens)
        self.assertEqual(self.bf.count("POST", "/token"), 1)


class ErrorClassificationTests(OutboundTestCase):
    def test_throttling_and_server_errors_are_retried_after_retry_after(self) -> None:
        for status in (429, 500, 503):
            with self.subTest(status):
                self.bf.next_answers.append(
                    (status, {"error": {"code": "Throttled", "message": "slow down"}}, {"Retry-After": "7"})
                )
                delivery = self.say(f"busy {status}")
                self.assertEqual(delivery.status, DeliveryStatus.PENDING, delivery.last_error)
                self.assertEqual(delivery.error_code, str(status))
                wait = (delivery.next_attempt_at - delivery.updated_at).total_seconds()
                self.assertAlmostEqual(wait, 7, delta=1)

    def test_forbidden_and_not_found_are_permanent(self) -> None:
        for status, code in ((403, "BotNotInConversationRoster"), (404, "ConversationNotFound")):
            with self.subTest(status):
                self.bf.next_answers.append((status, {"error": {"code": code, "message": "no"}}, {}))
                delivery = self.say(f"refused {status}")
                self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, str(status)))
                self.assertIn(code, delivery.last_error)

    def test_a_retried_delivery_is_sent_on_its_next_attempt(self) -> None:
        self.bf.next_answers.append((503, {"error": {"code": "ServiceError", "message": "down"}}, {"Retry-After": "0"}))

        # Retry-After 0: the retry runs at once (in-process tasks here), with the same token.
        delivery = self.say("eventually")

        self.assertEqual((delivery.status, delivery.attempts), (DeliveryStatus.SENT, 2), delivery.last_error)
        self.assertEqual(len(self.bf.connector_requests()), 2)
        self.assertEqual(len(self.bf.activities), 1)
        self.assertEqual(self.bf.count("POST", "/token"), 1)
