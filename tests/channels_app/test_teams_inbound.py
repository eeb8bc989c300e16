"""Inbound Teams activities on ``POST /webhooks/<channel_id>/``: verified, read, stored once.

Tokens are signed with the fake Bot Framework's own RSA key, published through
its OpenID metadata and key set over real HTTP. A message becomes an event from
the conversation (the room's address), the conversation reference is kept on
the binding; members added or removed are system events; anything not signed
by a published key for this app, this issuer, in its validity and for this
serviceUrl is a 403 that stores nothing.
"""

from __future__ import annotations

import jwt

from channels_app.providers.teams import auth
from rooms.enums import EventType, Visibility
from rooms.models import ChannelBinding, RoomEvent
from tests.channels_app.fakes.teams import fixture, new_rsa_key
from tests.channels_app.helpers import error_of, row_counts
from tests.channels_app.test_teams_support import CHANNEL, TeamsTestCase

PERSONAL = fixture("message_personal.json")["conversation"]["id"]
BOT = fixture("message_personal.json")["recipient"]["id"]


class InboundMessageTests(TeamsTestCase):
    def test_a_signed_message_becomes_one_event_and_the_conversation_reference_is_kept(self) -> None:
        payload = self.activity("message_personal.json")

        r = self.post_activity(payload)

        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual((body["status"], body["duplicate"]), ("stored", False))
        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.source_channel_id, CHANNEL)
        self.assertEqual(event.provider_message_id, "1718206401433")
        self.assertEqual(event.content, {"type": "text", "body": "Hello from Teams"})
        self.assertEqual(event.source_participant.address, PERSONAL)
        self.assertEqual(event.source_participant.display_name, "Megan Bowen")
        self.assertEqual(event.metadata["raw"], payload)
        binding = ChannelBinding.objects.get(room_id=body["room_id"], channel_id=CHANNEL)
        self.assertEqual(binding.address, PERSONAL)
        self.assertEqual(
            binding.metadata["teams"],
            {
                "service_url": self.bf.service_url,
                "conversation_id": PERSONAL,
                "conversation_type": "personal",
                "channel_id": "msteams",
                "bot_id": BOT,
                "bot_name": "RoomKit Bot",
                "user_id": payload["from"]["id"],
                "user_name": "Megan Bowen",
                "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            },
        )
        # The keys were fetched once: metadata, then its jwks_uri.
        self.assertEqual((self.bf.count("GET", "/openid"), self.bf.count("GET", "/keys")), (1, 1))

    def test_the_next_message_of_the_conversation_goes_to_the_same_room_and_keys_are_not_fetched_again(self) -> None:
        first = self.post_activity(self.activity("message_personal.json")).json()
        second = self.post_activity(self.activity("message_personal.json", id="1718206409999", text="again")).json()

        self.assertEqual(second["room_id"], first["room_id"])
        self.assertEqual(second["seq"], first["seq"] + 1)
        self.assertEqual((self.bf.count("GET", "/openid"), self.bf.count("GET", "/keys")), (1, 1))

    def test_a_redelivered_activity_stores_nothing_new(self) -> None:
        first = self.post_activity(self.activity("message_personal.json")).json()
        counts = row_counts()

        again = self.post_activity(self.activity("message_personal.json"))

        self.assertEqual(again.status_code, 200)
        self.assertEqual((again.json()["event_id"], again.json()["duplicate"]), (first["event_id"], True))
        self.assertEqual(row_counts(), counts)

    def test_a_channel_message_loses_the_bots_mention_and_its_html_copy(self) -> None:
        r = self.post_activity(self.activity("message_channel_mention.json"))

        event = RoomEvent.objects.get(pk=r.json()["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "where is my order 1003?"})
        self.assertEqual(event.source_participant.address, fixture("message_channel_mention.json")["conversation"]["id"])

    def test_an_adaptive_card_submit_is_a_reply_with_its_values(self) -> None:
        r = self.post_activity(self.activity("message_card_submit.json"))

        event = RoomEvent.objects.get(pk=r.json()["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "comment: Please deliver after 5pm\nrating: 4"})
        self.assertEqual(event.metadata["submitted"], {"comment": "Please deliver after 5pm", "rating": "4"})

    def test_a_press_of_our_own_cards_button_is_its_label_with_the_payload_kept(self) -> None:
        payload = self.activity(
            "message_card_submit.json",
            value={"roomkit": {"title": "Track order", "payload": "track:1003"}, "msteams": {"type": "messageBack"}},
        )

        event = RoomEvent.objects.get(pk=self.post_activity(payload).json()["event_id"])

        self.assertEqual(event.content, {"type": "text", "body": "Track order"})
        self.assertEqual(event.metadata["submitted"]["roomkit"]["payload"], "track:1003")

    def test_a_file_becomes_media(self) -> None:
        attachment = {
            "contentType": "application/vnd.microsoft.teams.file.download.info",
            "contentUrl": "https://contoso.sharepoint.com/personal/megan/Documents/invoice.pdf",
            "name": "invoice.pdf",
            "content": {"downloadUrl": "https://contoso.sharepoint.com/download/invoice.pdf", "uniqueId": "1", "fileType": "pdf"},
        }
        payload = self.activity("message_personal.json", text="my invoice", attachments=[attachment])

        event = RoomEvent.objects.get(pk=self.post_activity(payload).json()["event_id"])

        self.assertEqual(
            event.content,
            {
                "type": "composite",
                "parts": [
                    {"type": "text", "body": "my invoice"},
                    {
                        "type": "media",
                        "url": "https://contoso.sharepoint.com/download/invoice.pdf",
                        "mime_type": "application/pdf",
                        "filename": "invoice.pdf",
                    },
                ],
            },
        )

    def test_bodies_that_are_no_activity_are_400_and_store_nothing(self) -> None:
        def changed(**changes) -> dict:
            payload = self.activity("message_personal.json")
            for key, value in changes.items():
                if value is None:
                    payload.pop(key, None)
                else:
                    payload[key] = value
            return payload

        cases = {
            "a JSON list": b"[1, 2]",
            "no type": changed(type=None),
            "no id": changed(id=None),
            "no conversation": changed(conversation=None),
            "a conversation without id": changed(conversation={"conversationType": "personal"}),
            "text not a string": changed(text=["hi"]),
            "no text, value or attachment": changed(text=""),
            "attachments not a list": changed(attachments={"contentType": "image/png"}),
        }
        before = row_counts()
        for name, payload in cases.items():
            with self.subTest(name):
                r = self.post_activity(payload)
                error_of(self, r, 400)
                self.assertEqual(row_counts(), before)

    def test_not_json_is_refused_and_stores_nothing(self) -> None:
        before = row_counts()
        r = self.post_activity(b"not json")
        # Its serviceUrl cannot be matched to the token's: refused as unverified, or as not JSON; never stored.
        self.assertIn(r.status_code, (400, 403))
        self.assertEqual(row_counts(), before)

    def test_activity_types_we_do_not_act_on_are_acknowledged_and_store_nothing(self) -> None:
        before = row_counts()
        for kind in ("typing", "messageReaction", "installationUpdate"):
            with self.subTest(kind):
                r = self.post_activity(self.activity("message_personal.json", type=kind, text=None))
                self.assertEqual((r.status_code, r.json()), (200, {"ignored": kind}))
        self.assertEqual(row_counts(), before)


class MembersTests(TeamsTestCase):
    def test_members_added_and_removed_are_system_events_in_the_conversations_room(self) -> None:
        added = self.post_activity(self.activity("conversation_update_members_added.json"))
        removed = self.post_activity(self.activity("conversation_update_members_removed.json"))

        self.assertEqual(added.status_code, 200, added.content)
        self.assertEqual(removed.json()["room_id"], added.json()["room_id"])
        joined = RoomEvent.objects.get(pk=added.json()["event_id"])
        left = RoomEvent.objects.get(pk=removed.json()["event_id"])
        member = fixture("conversation_update_members_added.json")["membersAdded"][0]
        self.assertEqual((joined.type, left.type), (EventType.PARTICIPANT_JOINED, EventType.PARTICIPANT_LEFT))
        self.assertEqual((joined.visibility, joined.provider_message_id), (Visibility.INTERNAL, "f:5f85c2ad"))
        self.assertEqual(joined.content["type"], "system")
        self.assertEqual(joined.content["body"], f"{member['id']} joined")
        self.assertEqual(
            joined.content["data"]["members_added"], [{"id": member["id"], "name": "", "aad_object_id": member["aadObjectId"]}]
        )
        self.assertEqual(left.content["body"], f"{member['id']} left")
        binding = ChannelBinding.objects.get(room_id=added.json()["room_id"], channel_id=CHANNEL)
        self.assertEqual(binding.metadata["teams"]["conversation_id"], "19:efa9296d959346209fea44151c742e73@thread.skype")

    def test_the_bot_itself_added_is_named_as_the_bot(self) -> None:
        payload = self.activity("conversation_update_members_added.json", membersAdded=[{"id": BOT}])

        event = RoomEvent.objects.get(pk=self.post_activity(payload).json()["event_id"])

        self.assertEqual(event.content["body"], "The bot joined")

    def test_a_conversation_update_that_changes_no_membership_is_acknowledged(self) -> None:
        payload = self.activity("conversation_update_members_added.json", membersAdded=[], topicName="Renamed")
        before = row_counts()

        r = self.post_activity(payload)

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": "conversationUpdate"}))
        self.assertEqual(row_counts(), before)


class TokenVerificationTests(TeamsTestCase):
    def assertRefused(self, response) -> None:
        error_of(self, response, 403, "invalid_signature")

    def test_every_token_that_is_not_bot_frameworks_for_this_app_and_activity_is_403_and_stores_nothing(self) -> None:
        payload = self.activity("message_personal.json")
        other_key = new_rsa_key()
        cases = {
            "no Authorization header": {"token": None},
            "an empty bearer": {"token": " "},
            "not a JWT": {"token": "not-a-jwt"},
            "signed by another key under our kid": {"key": other_key},
            "signed by a key not published": {"kid": "unpublished", "key": other_key},
            "another app's audience": {"audience": "11111111-2222-3333-4444-555555555555"},
            "another issuer": {"issuer": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"},
            "expired beyond the leeway": {"expires_in": -(auth.LEEWAY_SECONDS + 60)},
            "not valid yet beyond the leeway": {"not_before_in": auth.LEEWAY_SECONDS + 60},
            "for another serviceUrl": {"service_url": "https://smba.trafficmanager.net/emea/"},
        }
        before = row_counts()
        for name, options in cases.items():
            with self.subTest(name):
                token = options.pop("token", "")
                self.assertRefused(self.post_activity(payload, token=token, **options))
                self.assertEqual(row_counts(), before)

    def test_a_token_with_another_algorithm_is_refused(self) -> None:
        # HS256 keyed with the public key's text: the classic confusion attack; and "none".
        public_pem = self.bf._jwk("key-1", self.bf.keys["key-1"])["n"]
        hs = jwt.encode({"iss": auth.ISSUER, "aud": self.bf.app_id}, public_pem, algorithm="HS256", headers={"kid": "key-1"})
        unsigned = jwt.encode({"iss": auth.ISSUER, "aud": self.bf.app_id}, None, algorithm="none", headers={"kid": "key-1"})
        before = row_counts()
        for token in (hs, unsigned):
            self.assertRefused(self.post_activity(self.activity("message_personal.json"), token=token))
        self.assertEqual(row_counts(), before)

    def test_a_token_expired_within_the_leeway_is_accepted(self) -> None:
        r = self.post_activity(self.activity("message_personal.json"), expires_in=-60)
        self.assertEqual(r.status_code, 200, r.content)

    def test_a_serviceurl_differing_only_by_its_trailing_slash_is_the_same(self) -> None:
        r = self.post_activity(self.activity("message_personal.json"), service_url=self.bf.url)
        self.assertEqual(r.status_code, 200, r.content)

    def test_a_key_not_endorsed_for_the_activitys_channel_is_refused(self) -> None:
        before = row_counts()
        r = self.post_activity(self.activity("message_personal.json", channelId="slack"))
        self.assertRefused(r)
        self.assertEqual(row_counts(), before)

    def test_a_flood_of_unknown_kids_costs_no_more_than_one_refetch(self) -> None:
        self.assertEqual(self.post_activity(self.activity("message_personal.json")).status_code, 200)
        other = new_rsa_key()
        for i in range(20):
            self.assertRefused(
                self.post_activity(self.activity("message_personal.json", id=f"forged-{i}"), kid=f"made-up-{i}", key=other)
            )
        # Fetched once on first use; the unknown kids come within the refresh interval, so none refetches.
        self.assertEqual((self.bf.count("GET", "/openid"), self.bf.count("GET", "/keys")), (1, 1))

    def test_an_unreachable_metadata_server_refuses_every_token(self) -> None:
        channel = self.make_teams_channel("teams-down", openid_metadata_url="http://127.0.0.1:9/openid")
        before = row_counts()
        for _ in range(3):
            self.assertRefused(self.post_activity(self.activity("message_personal.json"), path=f"/webhooks/{channel.id}/"))
        self.assertEqual(row_counts(), before)


class SigningKeyCacheTests(TeamsTestCase):
    """The key cache itself, with a clock the test moves: rotation is seen, refetches are bounded."""

    def setUp(self) -> None:
        super().setUp()
        self.now = 1000.0
        self.keys = auth.SigningKeys(clock=lambda: self.now, min_refresh_seconds=60)

    def test_a_rotated_key_is_fetched_once_the_refresh_interval_has_passed(self) -> None:
        self.assertIsNotNone(self.keys.key(self.bf.metadata_url, "key-1"))
        self.bf.keys["key-2"] = new_rsa_key()
        self.addCleanup(self.bf.keys.pop, "key-2", None)

        self.now += 10
        self.assertIsNone(self.keys.key(self.bf.metadata_url, "key-2"))  # too soon to ask again
        self.assertEqual(self.bf.count("GET", "/keys"), 1)
        self.now += 60
        key, endorsements = self.keys.key(self.bf.metadata_url, "key-2")
        self.assertEqual(self.bf.count("GET", "/keys"), 2)
        self.assertEqual(endorsements, ["msteams"])
        self.assertTrue(
            auth.verify_bot_framework_token(
                f"Bearer {self.bf.token_for(kid='key-2')}",
                app_id=self.bf.app_id,
                metadata_url=self.bf.metadata_url,
                service_url=self.bf.service_url,
                channel_id="msteams",
                keys=self.keys,
            )
        )

    def test_keys_are_refreshed_after_a_day_even_when_known(self) -> None:
        self.keys.key(self.bf.metadata_url, "key-1")
        self.now += auth.KEYS_TTL_SECONDS + 1
        self.keys.key(self.bf.metadata_url, "key-1")
        self.assertEqual(self.bf.count("GET", "/keys"), 2)
