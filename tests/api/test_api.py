"""REST API ``/api/v1/`` through HTTP: chat sessions, auth, rooms, events, messages, schema.

Tokens come from the real ``create_api_token`` command; rooms from the public
services. Query counts are pinned with assertNumQueries and compared between
small and large data sets, so an N+1 shows up as a failure.
"""

from __future__ import annotations

import json
from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext

from channels_app.webchat.services import webchat_message_send
from channels_app.webchat.sessions import chat_session_start
from channels_app.webchat.tokens import chat_token_verify
from rooms.models import APIToken, Room, RoomEvent
from rooms.services import channel_attach, room_close, room_pause
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel


def new_token(username: str = "integrator") -> str:
    out = StringIO()
    call_command("create_api_token", username, stdout=out)
    return out.getvalue().strip()


class APITestCase(TestCase):
    def setUp(self) -> None:
        self.token = new_token()
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers=self.auth, **kwargs)

    def post_json(self, path: str, payload, *, headers: dict | None = None, **kwargs):
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        kwargs.setdefault("content_type", "application/json")
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, headers=self.auth if headers is None else headers, **kwargs)

    def new_room(self, name: str = "Visitor") -> str:
        with self.captureOnCommitCallbacks(execute=True):
            return chat_session_start(display_name=name, open_now=True).room_id


class ChatSessionTests(APITestCase):
    def test_starts_a_session_without_auth(self) -> None:
        r = self.post_json("/api/v1/chat/sessions", {"display_name": "Ann"}, headers={})

        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        self.assertEqual(set(body), {"room_id", "participant_id", "token", "welcome_message", "reply_time", "demo_agent"})
        claims = chat_token_verify(body["token"])
        self.assertEqual((claims.room_id, claims.participant_id), (body["room_id"], body["participant_id"]))
        # The room is reserved, not created: it appears with the first message.
        self.assertFalse(Room.objects.filter(pk=body["room_id"]).exists())
        webchat_message_send(claims, client_msg_id="m1", text="hello")
        room = Room.objects.get(pk=body["room_id"])
        self.assertEqual(room.status, "active")
        participant = room.participants.get()
        self.assertEqual((participant.id, participant.display_name), (body["participant_id"], "Ann"))

    def test_body_is_optional(self) -> None:
        r = self.post_json("/api/v1/chat/sessions", b"", headers={})
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(chat_token_verify(r.json()["token"]).display_name, "Visitor")

        r = self.post_json("/api/v1/chat/sessions", {}, headers={})
        self.assertEqual(r.status_code, 201, r.content)

    def test_each_session_is_its_own_room(self) -> None:
        a = self.post_json("/api/v1/chat/sessions", {}, headers={}).json()
        b = self.post_json("/api/v1/chat/sessions", {}, headers={}).json()

        self.assertNotEqual(a["room_id"], b["room_id"])
        self.assertNotEqual(a["token"], b["token"])

    def test_bad_bodies_are_4xx_and_open_no_room(self) -> None:
        cases = [
            (b"{nope", "application/json", 400, "malformed_json"),
            (b"[1, 2]", "application/json", 400, "malformed_json"),
            (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "malformed_json"),
            (json.dumps({"display_name": "x" * 201}).encode(), "application/json", 400, "invalid_input"),
            (json.dumps({"display_name": 5}).encode(), "application/json", 400, "invalid_input"),
            (b'{"display_name": "Ann"}', "text/plain", 415, "unsupported_media_type"),
            (b"display_name=Ann", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ]
        before = row_counts()
        for body, ctype, status, code in cases:
            with self.subTest(body=body[:30], content_type=ctype):
                error_of(self, self.post_json("/api/v1/chat/sessions", body, headers={}, content_type=ctype), status, code)
                self.assertEqual(row_counts(), before)


class AuthTests(APITestCase):
    def test_rooms_need_a_bearer_token(self) -> None:
        room_id = self.new_room()
        bad_headers = [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer rk_not-a-real-token"},
            {"Authorization": f"Basic {self.token}"},
            {"Authorization": self.token},
            {"Authorization": "Bearer " + "x" * 500},
        ]
        for headers in bad_headers:
            for path in ("/api/v1/rooms", f"/api/v1/rooms/{room_id}", f"/api/v1/rooms/{room_id}/events"):
                with self.subTest(path=path, headers=headers):
                    error_of(self, self.client.get(path, headers=headers), 401, "unauthorized")

    def test_posting_a_message_needs_a_token(self) -> None:
        room_id = self.new_room()
        before = row_counts()

        r = self.post_json(f"/api/v1/rooms/{room_id}/messages", {"text": "hi"}, headers={})

        error_of(self, r, 401, "unauthorized")
        self.assertEqual(row_counts(), before)

    def test_revoked_token_and_inactive_user_are_refused(self) -> None:
        other = new_token("someone")
        APIToken.objects.filter(prefix=other[:10]).update(revoked=True)
        error_of(self, self.client.get("/api/v1/rooms", headers={"Authorization": f"Bearer {other}"}), 401)

        get_user_model().objects.filter(username="integrator").update(is_active=False)
        error_of(self, self.get("/api/v1/rooms"), 401)

    def test_a_valid_token_is_accepted(self) -> None:
        self.assertEqual(self.get("/api/v1/rooms").status_code, 200)


class RoomReadTests(APITestCase):
    def test_room_list(self) -> None:
        a, b = self.new_room("A"), self.new_room("B")
        room_close(room_id=b)

        body = self.get("/api/v1/rooms").json()

        self.assertEqual(body["count"], 2)
        self.assertEqual({r["id"] for r in body["rooms"]}, {a, b})
        room = next(r for r in body["rooms"] if r["id"] == a)
        self.assertEqual(room["status"], "active")
        self.assertEqual(
            room["conversation_state"],
            {
                "phase": None,
                "active_agent_id": None,
                "previous_agent_id": None,
                "handoff_count": 0,
                "phase_history": [],
                "context": {},
            },
        )

    def test_room_list_filters_and_pages(self) -> None:
        ids = [self.new_room(str(i)) for i in range(3)]
        room_close(room_id=ids[0])

        closed = self.get("/api/v1/rooms", data={"status": "closed"}).json()
        self.assertEqual([r["id"] for r in closed["rooms"]], [ids[0]])
        self.assertEqual(closed["count"], 1)

        page = self.get("/api/v1/rooms", data={"limit": 2, "offset": 0}).json()
        rest = self.get("/api/v1/rooms", data={"limit": 2, "offset": 2}).json()
        self.assertEqual((len(page["rooms"]), len(rest["rooms"]), page["count"]), (2, 1, 3))
        self.assertEqual({r["id"] for r in page["rooms"] + rest["rooms"]}, set(ids))

    def test_room_list_bad_query_is_400(self) -> None:
        for query in ({"status": "melted"}, {"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}):
            with self.subTest(query=query):
                error_of(self, self.get("/api/v1/rooms", data=query), 400, "invalid_input")

    def test_room_detail_has_status_bindings_participants_and_conversation_state(self) -> None:
        make_channel("crm", config={"url": "http://127.0.0.1:9/"})
        room_id = self.new_room("Ann")
        channel_attach(room_id=room_id, channel_id="crm", address="crm-7", display_name="CRM desk")
        Room.objects.filter(pk=room_id).update(
            conversation_state={
                "phase": "triage",
                "active_agent_id": "agent-a",
                "handoff_count": 2,
                "phase_history": [{"from": "intake", "to": "triage"}],
            }
        )

        r = self.get(f"/api/v1/rooms/{room_id}")

        self.assertEqual(r.status_code, 200, r.content)
        room = r.json()
        self.assertEqual((room["id"], room["status"]), (room_id, "active"))
        state = room["conversation_state"]
        self.assertEqual(
            (state["phase"], state["active_agent_id"], state["handoff_count"], state["phase_history"]),
            ("triage", "agent-a", 2, [{"from": "intake", "to": "triage"}]),
        )
        self.assertEqual(
            {(b["channel_id"], b["address"]) for b in room["bindings"]},
            {("webchat", room["participants"][0]["id"]), ("crm", "crm-7")},
        )
        crm = next(b for b in room["bindings"] if b["channel_id"] == "crm")
        self.assertEqual((crm["access"], crm["muted"], crm["category"]), ("read_write", False, "transport"))
        self.assertEqual(sorted(p["display_name"] for p in room["participants"]), ["Ann", "CRM desk"])
        self.assertTrue(all(b["participant_id"] for b in room["bindings"]))

    def test_paused_and_closed_rooms_say_so(self) -> None:
        room_id = self.new_room()
        room_pause(room_id=room_id)
        self.assertEqual(self.get(f"/api/v1/rooms/{room_id}").json()["status"], "paused")
        room_close(room_id=room_id)
        room = self.get(f"/api/v1/rooms/{room_id}").json()
        self.assertEqual(room["status"], "closed")
        self.assertIsNotNone(room["closed_at"])

    def test_unknown_room_is_404_json(self) -> None:
        for path in ("/api/v1/rooms/no-such-room", "/api/v1/rooms/no-such-room/events"):
            with self.subTest(path=path):
                error_of(self, self.get(path), 404, "unknown_room")

    def test_unknown_api_path_is_404_json(self) -> None:
        error_of(self, self.get("/api/v1/nothing-here"), 404)


class EventTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.new_room()
        for i in range(1, 6):
            self.assertEqual(self.post_json(f"/api/v1/rooms/{self.room_id}/messages", {"text": f"m{i}"}).status_code, 201)

    def events(self, **query) -> dict:
        r = self.get(f"/api/v1/rooms/{self.room_id}/events", data=query)
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def test_events_in_seq_order_with_after_seq_and_limit(self) -> None:
        all_events = self.events()["events"]
        self.assertEqual([e["seq"] for e in all_events], [1, 2, 3, 4, 5])
        self.assertEqual([e["content"]["body"] for e in all_events], ["m1", "m2", "m3", "m4", "m5"])

        page = self.events(after_seq=1, limit=2)
        self.assertEqual([e["seq"] for e in page["events"]], [2, 3])
        self.assertEqual(page["next_after_seq"], 3)
        rest = self.events(after_seq=page["next_after_seq"])
        self.assertEqual([e["seq"] for e in rest["events"]], [4, 5])
        self.assertEqual(self.events(after_seq=5), {"events": [], "next_after_seq": 5})

    def test_event_shape(self) -> None:
        event = self.events(limit=1)["events"][0]

        stored = RoomEvent.objects.get(room_id=self.room_id, seq=1)
        self.assertEqual(event["id"], stored.id)
        self.assertEqual(
            (event["room_id"], event["type"], event["direction"], event["status"]),
            (self.room_id, "message", "inbound", "delivered"),
        )
        self.assertEqual(
            event["source"], {"channel_id": "api", "participant_id": stored.source_participant_id, "display_name": "integrator"}
        )
        self.assertTrue(event["created_at"].endswith("Z"))

    def test_bad_paging_is_400(self) -> None:
        for query in ({"after_seq": -1}, {"after_seq": "x"}, {"limit": 0}, {"limit": 1001}):
            with self.subTest(query=query):
                error_of(self, self.get(f"/api/v1/rooms/{self.room_id}/events", data=query), 400, "invalid_input")


class PostMessageTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.new_room()
        self.url = f"/api/v1/rooms/{self.room_id}/messages"

    def test_post_stores_the_next_event(self) -> None:
        r = self.post_json(self.url, {"text": "hello from the CRM", "sender": "Bob at CRM"})

        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        self.assertEqual((body["room_id"], body["seq"], body["duplicate"]), (self.room_id, 1, False))
        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual((event.source_channel_id, event.content), ("api", {"type": "text", "body": "hello from the CRM"}))
        self.assertEqual(event.source_participant.display_name, "Bob at CRM")

    def test_repeat_with_the_same_idempotency_key_is_200_duplicate(self) -> None:
        first = self.post_json(self.url, {"text": "once", "idempotency_key": "k-1"})
        self.assertEqual(first.status_code, 201)
        before = row_counts()

        again = self.post_json(self.url, {"text": "once", "idempotency_key": "k-1"})

        self.assertEqual(again.status_code, 200, again.content)
        self.assertIs(again.json()["duplicate"], True)
        self.assertEqual((again.json()["event_id"], again.json()["seq"]), (first.json()["event_id"], first.json()["seq"]))
        self.assertEqual(row_counts(), before)

    def test_without_a_key_every_post_is_new(self) -> None:
        seqs = [self.post_json(self.url, {"text": "same"}).json()["seq"] for _ in range(2)]
        self.assertEqual(seqs, [1, 2])

    def test_empty_key_is_no_key(self) -> None:
        a = self.post_json(self.url, {"text": "one", "idempotency_key": ""})
        b = self.post_json(self.url, {"text": "two", "idempotency_key": ""})

        self.assertEqual((a.status_code, b.status_code), (201, 201), b.content)

    def test_two_integrators_with_the_same_key_do_not_swallow_each_other(self) -> None:
        other_auth = {"Authorization": f"Bearer {new_token('other-integrator')}"}
        other_room = self.new_room()

        mine = self.post_json(self.url, {"text": "mine", "idempotency_key": "1"})
        theirs = self.post_json(
            f"/api/v1/rooms/{other_room}/messages", {"text": "theirs", "idempotency_key": "1"}, headers=other_auth
        )

        self.assertEqual((mine.status_code, theirs.status_code), (201, 201), theirs.content)
        self.assertEqual(theirs.json()["room_id"], other_room)
        self.assertEqual(RoomEvent.objects.get(pk=theirs.json()["event_id"]).content["body"], "theirs")

    def test_unknown_room_is_404(self) -> None:
        before = row_counts()
        error_of(self, self.post_json("/api/v1/rooms/no-such-room/messages", {"text": "hi"}), 404, "unknown_room")
        self.assertEqual(row_counts(), before)

    def test_closed_room_is_409(self) -> None:
        room_close(room_id=self.room_id)
        before = row_counts()

        error_of(self, self.post_json(self.url, {"text": "anyone there?"}), 409, "room_closed")

        self.assertEqual(row_counts(), before)

    def test_paused_room_wakes_up(self) -> None:
        room_pause(room_id=self.room_id)

        r = self.post_json(self.url, {"text": "hello again"})

        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(Room.objects.get(pk=self.room_id).status, "active")

    def test_bad_bodies_are_4xx_and_store_nothing(self) -> None:
        cases = [
            (b"{nope", "application/json", 400, "malformed_json"),
            (b"[]", "application/json", 400, "malformed_json"),
            (b'"text"', "application/json", 400, "malformed_json"),
            (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "malformed_json"),
            (b'{"text": "nul \\u0000"}', "application/json", 400, "invalid_text"),
            (b'{"text": "\\ud800"}', "application/json", 400, "invalid_text"),
            (b"{}", "application/json", 400, "invalid_input"),
            (b'{"text": ""}', "application/json", 400, "invalid_input"),
            (b'{"text": 42}', "application/json", 400, "invalid_input"),
            (b'{"text": ["hi"]}', "application/json", 400, "invalid_input"),
            (json.dumps({"text": "hi", "idempotency_key": "k" * 256}).encode(), "application/json", 400, "invalid_input"),
            (b'{"text": "hi"}', "text/plain", 415, "unsupported_media_type"),
            (b"text=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ]
        before = row_counts()
        for body, ctype, status, code in cases:
            with self.subTest(body=body[:30], content_type=ctype):
                error_of(self, self.post_json(self.url, body, content_type=ctype), status, code)
                self.assertEqual(row_counts(), before)

    def test_oversize_body_is_413(self) -> None:
        before = row_counts()
        with override_settings(ROOMKIT_MAX_BODY_BYTES=128):
            r = self.post_json(self.url, {"text": "x" * 200})

        error_of(self, r, 413, "body_too_large")
        self.assertEqual(row_counts(), before)

    def test_message_reaches_the_rooms_other_channels(self) -> None:
        make_channel("crm", config={"url": ""})
        channel_attach(room_id=self.room_id, channel_id="crm", address="crm-1")

        body = self.post_json(self.url, {"text": "hi"}).json()

        self.assertEqual(
            list(RoomEvent.objects.get(pk=body["event_id"]).deliveries.values_list("channel_id", flat=True)), ["crm"]
        )


class QueryCountTests(APITestCase):
    """Counts are pinned and must not grow with the number of rooms, bindings or events."""

    def count_queries(self, path: str, **query) -> int:
        with CaptureQueriesContext(connection) as ctx:
            r = self.get(path, data=query)
        self.assertEqual(r.status_code, 200, r.content)
        return len(ctx.captured_queries)

    def fill_room(self, room_id: str, bindings: int) -> None:
        for i in range(bindings):
            channel_id = f"crm-{room_id[:6]}-{i}"
            make_channel(channel_id)
            channel_attach(room_id=room_id, channel_id=channel_id, address=f"addr-{i}")

    def test_room_list(self) -> None:
        self.fill_room(self.new_room(), 1)
        self.get("/api/v1/rooms")  # the token's last-use stamp is written once; not part of the count
        small = self.count_queries("/api/v1/rooms")
        for _ in range(8):
            self.fill_room(self.new_room(), 3)

        with self.assertNumQueries(3):  # token, rooms page, total count
            body = self.get("/api/v1/rooms").json()

        self.assertEqual(body["count"], 9)
        self.assertEqual(self.count_queries("/api/v1/rooms"), small)

    def test_room_detail(self) -> None:
        small_room, big_room = self.new_room(), self.new_room()
        self.fill_room(big_room, 6)
        self.get("/api/v1/rooms")

        with self.assertNumQueries(4):  # token, room, bindings, participants
            body = self.get(f"/api/v1/rooms/{big_room}").json()

        self.assertEqual(len(body["bindings"]), 7)
        self.assertEqual(len(body["participants"]), 7)
        self.assertEqual(self.count_queries(f"/api/v1/rooms/{small_room}"), self.count_queries(f"/api/v1/rooms/{big_room}"))

    def test_events(self) -> None:
        room_id = self.new_room()
        self.post_json(f"/api/v1/rooms/{room_id}/messages", {"text": "first"})
        small = self.count_queries(f"/api/v1/rooms/{room_id}/events")
        make_channel("crm")
        channel_attach(room_id=room_id, channel_id="crm", address="crm-1")
        for i in range(10):
            self.post_json(f"/api/v1/rooms/{room_id}/messages", {"text": f"m{i}", "sender": f"sender-{i}"})

        self.assertEqual(self.count_queries(f"/api/v1/rooms/{room_id}/events"), small)


class OpenAPITests(TestCase):
    def test_schema_is_json_with_every_path(self) -> None:
        r = self.client.get("/api/v1/openapi.json")

        self.assertEqual(r.status_code, 200)
        schema = json.loads(r.content)
        self.assertTrue(schema["openapi"].startswith("3."))
        paths = schema["paths"]
        expected = {
            "/api/v1/chat/sessions": "post",
            "/api/v1/rooms": "get",
            "/api/v1/rooms/{room_id}": "get",
            "/api/v1/rooms/{room_id}/events": "get",
            "/api/v1/rooms/{room_id}/messages": "post",
        }
        for path, method in expected.items():
            with self.subTest(path=path):
                self.assertIn(method, paths[path])
        self.assertIn("security", paths["/api/v1/rooms"]["get"])
        self.assertNotIn("security", paths["/api/v1/chat/sessions"]["post"])
