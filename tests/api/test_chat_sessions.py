"""Chat sessions cost nothing until the visitor writes, and cannot be mass-produced.

``POST /api/v1/chat/sessions`` is open to anyone: it is throttled per client
address, it stores nothing (the token reserves a room and a participant), and
the visitor's first message creates the room. Uploads are capped per session.
"""

from __future__ import annotations

import threading

from django.db import connection
from django.test import TestCase, TransactionTestCase, override_settings

from channels_app.webchat.services import webchat_message_send
from channels_app.webchat.tokens import chat_token_verify
from rooms.errors import InvalidInput
from rooms.hooks import HookTrigger
from rooms.infra.rate_limits import rate_limit_reset
from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from tests.api.test_uploads import UploadTestCase, png_bytes
from tests.rooms.fixtures import use_hook

SESSIONS = "/api/v1/chat/sessions"


class ThrottleTests(TestCase):
    def setUp(self) -> None:
        rate_limit_reset()
        self.addCleanup(rate_limit_reset)

    def start(self, address: str = "203.0.113.7"):
        return self.client.post(SESSIONS, data={}, content_type="application/json", REMOTE_ADDR=address)

    @override_settings(ROOMKIT_CHAT_SESSION_RATE="3/minute")
    def test_a_burst_from_one_address_gets_429_with_retry_after(self) -> None:
        self.assertEqual([self.start().status_code for _ in range(3)], [201, 201, 201])
        refused = self.start()
        self.assertEqual(refused.status_code, 429)
        self.assertEqual(refused.json()["error"]["code"], "rate_limited")
        self.assertTrue(1 <= int(refused["Retry-After"]) <= 60)
        # Another address has its own budget.
        self.assertEqual(self.start("198.51.100.9").status_code, 201)

    @override_settings(ROOMKIT_CHAT_SESSION_RATE="2/minute", ROOMKIT_CLIENT_IP_HEADER="X-Forwarded-For")
    def test_behind_a_trusted_proxy_the_forwarded_address_counts(self) -> None:
        def start(forwarded: str):
            return self.client.post(
                SESSIONS, data={}, content_type="application/json", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded
            )

        self.assertEqual([start("203.0.113.1, 10.0.0.1").status_code for _ in range(2)], [201, 201])
        self.assertEqual(start("203.0.113.1").status_code, 429)
        self.assertEqual(start("203.0.113.2").status_code, 201, "the proxy's own address is not the client")

    @override_settings(ROOMKIT_CHAT_SESSION_RATE="2/minute")
    def test_a_forged_forwarded_header_is_ignored_without_a_trusted_proxy(self) -> None:
        for i in range(2):
            self.client.post(SESSIONS, data={}, content_type="application/json", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
        third = self.client.post(SESSIONS, data={}, content_type="application/json", HTTP_X_FORWARDED_FOR="203.0.113.99")
        self.assertEqual(third.status_code, 429)


class RoomOnFirstMessageTests(TestCase):
    def test_no_room_exists_before_the_first_message(self) -> None:
        rooms_before = Room.objects.count()
        for _ in range(5):
            self.assertEqual(
                self.client.post(SESSIONS, data={"display_name": "Ann"}, content_type="application/json").status_code, 201
            )
        self.assertEqual(Room.objects.count(), rooms_before)
        self.assertFalse(Participant.objects.exists())

    def test_the_first_message_opens_the_reserved_room_once(self) -> None:
        created: list[str] = []
        use_hook(self, HookTrigger.ON_ROOM_CREATED, lambda room, ctx: created.append(room.id))
        session = self.client.post(SESSIONS, data={"display_name": "Ann"}, content_type="application/json").json()
        claims = chat_token_verify(session["token"])

        with self.captureOnCommitCallbacks(execute=True):
            first = webchat_message_send(claims, client_msg_id="m1", text="hello")
        with self.captureOnCommitCallbacks(execute=True):
            second = webchat_message_send(claims, client_msg_id="m2", text="again")

        self.assertEqual((first.room_id, second.room_id), (session["room_id"], session["room_id"]))
        self.assertEqual((first.seq, second.seq), (1, 2))
        room = Room.objects.get(pk=session["room_id"])
        participant = Participant.objects.get(pk=session["participant_id"])
        self.assertEqual((participant.room_id, participant.display_name, participant.address), (room.id, "Ann", participant.id))
        binding = ChannelBinding.objects.get(room=room, channel_id="webchat")
        self.assertEqual((binding.address, binding.participant_id), (participant.id, participant.id))
        self.assertEqual(created, [room.id])

    def test_a_refused_first_message_opens_nothing(self) -> None:
        session = self.client.post(SESSIONS, data={}, content_type="application/json").json()
        claims = chat_token_verify(session["token"])
        with self.assertRaises(InvalidInput):
            webchat_message_send(claims, client_msg_id="m1", text="   ")
        self.assertFalse(Room.objects.filter(pk=session["room_id"]).exists())


class FirstMessagesRaceTests(TransactionTestCase):
    def test_two_tabs_writing_first_at_once_open_one_room(self) -> None:
        session = self.client.post(SESSIONS, data={"display_name": "Ann"}, content_type="application/json").json()
        claims = chat_token_verify(session["token"])
        barrier = threading.Barrier(4)
        results, errors = [], []

        def write(i: int) -> None:
            try:
                barrier.wait(5)
                results.append(webchat_message_send(claims, client_msg_id=f"tab-{i}", text=f"hi {i}"))
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        self.assertEqual(errors, [])
        self.assertEqual({r.room_id for r in results}, {session["room_id"]})
        self.assertEqual(Room.objects.filter(pk=session["room_id"]).count(), 1)
        self.assertEqual(Participant.objects.filter(pk=session["participant_id"]).count(), 1)
        self.assertEqual(sorted(RoomEvent.objects.values_list("seq", flat=True)), [1, 2, 3, 4])


class UploadCapTests(UploadTestCase):
    def setUp(self) -> None:
        super().setUp()
        rate_limit_reset()
        self.addCleanup(rate_limit_reset)

    @override_settings(ROOMKIT_CHAT_UPLOADS_PER_SESSION=2)
    def test_a_session_uploads_up_to_its_cap(self) -> None:
        self.assertEqual([self.upload(png_bytes()).status_code for _ in range(2)], [201, 201])
        refused = self.upload(png_bytes())
        self.assertEqual(refused.status_code, 429)
        self.assertEqual(refused.json()["error"]["code"], "upload_limit")
        self.assertEqual(len(self.stored_files()), 2)

    def test_a_session_not_yet_written_in_may_upload(self) -> None:
        session = self.client.post(SESSIONS, data={}, content_type="application/json").json()
        response = self.upload(png_bytes(), headers={"Authorization": f"Bearer {session['token']}"})
        self.assertEqual(response.status_code, 201, response.content)
        self.assertFalse(Room.objects.filter(pk=session["room_id"]).exists())
