"""The operators' inbox: the list (names, previews, filters, search, queries), the composer, the side panel's actions."""

from __future__ import annotations

import json
from datetime import timedelta

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rooms.console import inbox
from rooms.console.search import rooms_with_text
from rooms.enums import ConversationStatus, EventType, ParticipantRole, Visibility
from rooms.hooks import HookTrigger, fire
from rooms.models import AuditEntry, CannedResponse, Label, OperatorPresence, Participant, Room, RoomEvent
from tests.console.helpers import chat_room, csrf_post, logged_in, operator, say, sms_and_web_channels, snapshot, viewer

INBOX = "/admin/inbox/"


def rows_html(client, **params) -> str:
    response = client.get(INBOX + "list/", params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="rk-inbox-list")
    assert response.status_code == 200, response.content
    return response.content.decode()


class InboxListTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)

    def test_a_row_shows_the_customer_name_channel_last_message_and_unread_never_a_hex_id(self) -> None:
        room = chat_room()
        say(room.pk, "Where is my parcel?")
        html = rows_html(self.client)
        self.assertIn("Alice", html)
        self.assertIn("Where is my parcel?", html)
        self.assertIn('title="websocket"', html)
        self.assertIn('class="rk-badge"', html)
        self.assertNotIn(f">{room.pk}<", html)
        self.assertIn(f"/admin/inbox/c/{room.pk}/", html)

    def test_unread_counts_the_customers_messages_after_the_teams_read_marker(self) -> None:
        room = chat_room(sms=None)
        say(room.pk, "one")
        say(room.pk, "two")

        def badge() -> str:
            html = rows_html(self.client)
            return html.split('class="rk-badge" title="unread">', 1)[1].split("<", 1)[0] if "rk-badge" in html else "0"

        self.assertEqual(badge(), "2")
        csrf_post(self.client, f"{INBOX}c/{room.pk}/send/", {"mode": "reply", "text": "ours", "token": "u1"})
        csrf_post(self.client, f"{INBOX}c/{room.pk}/send/", {"mode": "note", "text": "a note", "token": "u2"})
        self.assertEqual(badge(), "2")  # the team's own words are not unread
        csrf_post(self.client, f"{INBOX}c/{room.pk}/read/", {"seq": str(Room.objects.get(pk=room.pk).last_seq)})
        self.assertEqual(badge(), "0")
        say(room.pk, "three")
        self.assertEqual(badge(), "1")

    def test_an_operators_reply_is_the_preview_marked_as_ours(self) -> None:
        room = chat_room()
        say(room.pk, "hello")
        csrf_post(self.client, f"{INBOX}c/{room.pk}/send/", {"mode": "reply", "text": "Hi Alice, on it", "token": "t1"})
        html = rows_html(self.client)
        self.assertIn("Hi Alice, on it", html)
        self.assertIn('<span class="rk-you">You:</span> Hi Alice, on it', html)

    def test_a_private_note_is_never_the_preview(self) -> None:
        room = chat_room()
        say(room.pk, "customer words")
        csrf_post(self.client, f"{INBOX}c/{room.pk}/send/", {"mode": "note", "text": "internal remark", "token": "n1"})
        html = rows_html(self.client)
        self.assertIn("customer words", html)
        self.assertNotIn("internal remark", html)

    def test_mine_unassigned_and_all_with_their_counts(self) -> None:
        mine, theirs, nobodys = chat_room("m", sms=None), chat_room("t", sms=None), chat_room("n", sms=None)
        other = operator("oscar")
        Room.objects.filter(pk=mine.pk).update(assignee=self.user)
        Room.objects.filter(pk=theirs.pk).update(assignee=other)
        for room in (mine, theirs, nobodys):
            say(room.pk, f"hello {room.name}")
        self.assertEqual(self._ids(view="mine"), {mine.pk})
        self.assertEqual(self._ids(view="unassigned"), {nobodys.pk})
        self.assertEqual(self._ids(view="all"), {mine.pk, theirs.pk, nobodys.pk})
        html = rows_html(self.client, view="mine")
        self.assertIn('id="rk-count-mine" hx-swap-oob="true">1<', html)
        self.assertIn('id="rk-count-unassigned" hx-swap-oob="true">1<', html)
        self.assertIn('id="rk-count-all" hx-swap-oob="true">3<', html)

    def test_status_filter_defaults_to_open(self) -> None:
        open_room, resolved = chat_room("o", sms=None), chat_room("r", sms=None)
        Room.objects.filter(pk=resolved.pk).update(conversation_status=ConversationStatus.RESOLVED)
        self.assertEqual(self._ids(), {open_room.pk})
        self.assertEqual(self._ids(status="resolved"), {resolved.pk})
        self.assertEqual(self._ids(status="any"), {open_room.pk, resolved.pk})

    def test_channel_agent_and_label_filters(self) -> None:
        web_only, with_sms = chat_room("w", sms=None), chat_room("s")
        Room.objects.filter(pk=with_sms.pk).update(conversation_state={"active_agent_id": "billing"})
        vip = Label.objects.create(name="vip")
        Room.objects.get(pk=web_only.pk).labels.add(vip)
        self.assertEqual(self._ids(channel="sms"), {with_sms.pk})
        self.assertEqual(self._ids(agent="billing"), {with_sms.pk})
        self.assertEqual(self._ids(label="vip"), {web_only.pk})

    def test_search_finds_names_addresses_and_message_text_by_word_prefixes(self) -> None:
        refund, parcel = chat_room("a", sms=None), chat_room("b", sender="bob", sms="+15557654321")
        say(refund.pk, "I would like a refund for my order")
        say(parcel.pk, "Where is the parcel?", sender="bob")
        self.assertEqual(self._ids(q="refu ord"), {refund.pk})
        self.assertEqual(self._ids(q="PARCEL"), {parcel.pk})
        self.assertEqual(self._ids(q="bob"), {parcel.pk})
        self.assertEqual(self._ids(q="+1555765"), {parcel.pk})
        self.assertEqual(self._ids(q="nothing-like-this"), set())
        # Query syntax is never passed through: quotes, stars and operators are plain words.
        self.assertEqual(self._ids(q='refund" OR *'), {refund.pk})

    def test_search_uses_the_full_text_index_not_the_event_json(self) -> None:
        sql = str(rooms_with_text("refund").sql)
        self.assertNotIn("content", sql.split("WHERE", 1)[1] if connection.vendor == "sqlite" else "")
        if connection.vendor == "sqlite":
            self.assertIn("rooms_event_fts MATCH", sql)
        else:
            self.assertIn("to_tsvector('simple'", sql)

    def test_an_edited_message_is_found_by_its_new_text_only(self) -> None:
        room = chat_room(sms=None)
        say(room.pk, "original wording")
        event = RoomEvent.objects.filter(room=room, type=EventType.MESSAGE).latest("seq")
        RoomEvent.objects.filter(pk=event.pk).update(content={"type": "text", "body": "corrected phrasing"})
        self.assertEqual(self._ids(q="original"), set())
        self.assertEqual(self._ids(q="corrected"), {room.pk})

    def test_unknown_filter_values_are_refused_with_400(self) -> None:
        for params in ({"view": "theirs"}, {"status": "sleeping"}, {"channel": "pigeon"}, {"q": "x" * 201}):
            with self.subTest(params=params):
                response = self.client.get(INBOX + "list/", params)
                self.assertEqual(response.status_code, 400)

    def test_the_list_costs_the_same_queries_for_3_or_30_rooms(self) -> None:
        def queries() -> int:
            with CaptureQueriesContext(connection) as ctx:
                self.assertEqual(self.client.get(INBOX + "list/").status_code, 200)
            return len(ctx.captured_queries)

        for i in range(3):
            say(chat_room(f"r{i}", sender=f"u{i}").pk, "hi", sender=f"u{i}")
        few = queries()
        for i in range(3, 30):
            say(chat_room(f"r{i}", sender=f"u{i}").pk, "hi", sender=f"u{i}")
        self.assertEqual(queries(), few)
        self.assertLessEqual(few, 10)

    def test_the_conversation_page_costs_the_same_queries_for_a_short_or_long_timeline(self) -> None:
        room = chat_room()
        say(room.pk, "first")

        def queries() -> int:
            with CaptureQueriesContext(connection) as ctx:
                self.assertEqual(self.client.get(f"{INBOX}c/{room.pk}/").status_code, 200)
            return len(ctx.captured_queries)

        short = queries()
        for i in range(25):
            say(room.pk, f"more {i}")
        self.assertEqual(queries(), short)

    def test_the_page_opens_a_conversation_with_its_timeline_composer_and_panel(self) -> None:
        room = chat_room()
        say(room.pk, "<b>bold?</b> hello")
        html = self.client.get(f"{INBOX}c/{room.pk}/").content.decode()
        self.assertIn('id="rk-composer-form"', html)
        self.assertIn('id="rk-inbox-panel"', html)
        self.assertIn("&lt;b&gt;bold?&lt;/b&gt; hello", html)  # the same safe rendering as the room page
        self.assertIn("htmx", html)
        self.assertEqual(self.client.get(f"{INBOX}c/nope/").status_code, 404)

    def _ids(self, **params) -> set[str]:
        html = rows_html(self.client, **params)
        return {part.split('"', 1)[0] for part in html.split('data-room-id="')[1:]}


class InboxActionTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)
        self.room = chat_room()
        say(self.room.pk, "hello")

    def act(self, action: str, **data):
        return csrf_post(self.client, f"{INBOX}c/{self.room.pk}/action/{action}/", data)

    def test_assign_to_me_to_an_operator_and_to_nobody_each_audited(self) -> None:
        other = operator("oscar")
        response = self.act("assign", assignee="me")
        self.assertEqual(response.status_code, 200)
        self.assertIn("rk-list-changed", json.loads(response.headers["HX-Trigger"]))
        self.assertEqual(Room.objects.get(pk=self.room.pk).assignee, self.user)
        self.act("assign", assignee=str(other.pk))
        self.assertEqual(Room.objects.get(pk=self.room.pk).assignee, other)
        self.act("assign", assignee="")
        self.assertIsNone(Room.objects.get(pk=self.room.pk).assignee)
        self.assertEqual(AuditEntry.objects.filter(action="assign", room_id=self.room.pk).count(), 3)

    def test_assigning_to_someone_who_is_not_an_operator_is_refused_and_changes_nothing(self) -> None:
        watcher = viewer()
        before = snapshot(self.room.pk)
        response = self.act("assign", assignee=str(watcher.pk))
        self.assertEqual(response.status_code, 400)
        self.assertIn("not an operator", response.content.decode())
        self.assertEqual(snapshot(self.room.pk), before)
        self.assertIsNone(Room.objects.get(pk=self.room.pk).assignee)

    def test_ids_no_database_could_hold_are_a_400(self) -> None:
        for data in (
            {"assignee": "9" * 40},
            {"assignee": "x"},
            {"assignee": "me", "team": "9" * 40},
            {"assignee": "me", "team": "abc"},
        ):
            with self.subTest(data=data):
                self.assertEqual(self.act("assign", **data).status_code, 400)
        self.assertIsNone(Room.objects.get(pk=self.room.pk).assignee)

    def test_resolve_pending_reopen(self) -> None:
        self.act("resolve")
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.RESOLVED)
        self.act("set_status", status="pending")
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.PENDING)
        self.act("set_status", status="open")
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.OPEN)
        self.assertEqual(self.act("set_status", status="snoozed").status_code, 400)  # snoozing needs a time

    def test_a_customer_message_reopens_a_resolved_pending_or_snoozed_conversation(self) -> None:
        for status in (ConversationStatus.RESOLVED, ConversationStatus.PENDING, ConversationStatus.SNOOZED):
            with self.subTest(status=status):
                Room.objects.filter(pk=self.room.pk).update(conversation_status=status, snoozed_until=timezone.now())
                say(self.room.pk, "me again")
                room = Room.objects.get(pk=self.room.pk)
                self.assertEqual((room.conversation_status, room.snoozed_until), (ConversationStatus.OPEN, None))

    def test_the_teams_own_reply_leaves_a_resolved_conversation_resolved(self) -> None:
        self.act("resolve")
        csrf_post(self.client, f"{INBOX}c/{self.room.pk}/send/", {"mode": "reply", "text": "one last thing", "token": "x"})
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.RESOLVED)

    def test_snooze_until_a_preset_and_wake_when_it_ends(self) -> None:
        self.act("snooze", until="1h")
        room = Room.objects.get(pk=self.room.pk)
        self.assertEqual(room.conversation_status, ConversationStatus.SNOOZED)
        self.assertAlmostEqual(room.snoozed_until.timestamp(), (timezone.now() + timedelta(hours=1)).timestamp(), delta=5)
        self.assertEqual(inbox.wake_snoozed(), [])
        self.assertEqual(inbox.wake_snoozed(now=timezone.now() + timedelta(hours=2)), [self.room.pk])
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.OPEN)

    def test_a_snooze_in_the_past_or_unparseable_is_refused(self) -> None:
        for until in (
            "",
            "yesterday",
            (timezone.now() - timedelta(hours=1)).isoformat(),
            "2999-01-01T00:00:00",
            "2027-02-30T10:00",
        ):
            with self.subTest(until=until):
                self.assertEqual(self.act("snooze", until=until).status_code, 400)
        self.assertEqual(Room.objects.get(pk=self.room.pk).conversation_status, ConversationStatus.OPEN)

    def test_labels_set_from_the_panels_checkboxes_and_cleared(self) -> None:
        Label.objects.create(name="billing")
        Label.objects.create(name="vip")
        csrf_post(self.client, f"{INBOX}c/{self.room.pk}/action/set_labels/", {"label": ["billing", "vip"]})
        self.assertEqual(sorted(Room.objects.get(pk=self.room.pk).labels.values_list("name", flat=True)), ["billing", "vip"])
        self.act("set_labels")
        self.assertEqual(Room.objects.get(pk=self.room.pk).labels.count(), 0)
        self.assertEqual(
            csrf_post(self.client, f"{INBOX}c/{self.room.pk}/action/set_labels/", {"label": "nope"}).status_code, 400
        )

    def test_take_over_assigns_an_unassigned_conversation_to_the_operator(self) -> None:
        response = self.act("takeover")
        self.assertEqual(response.status_code, 200, response.content)
        room = Room.objects.get(pk=self.room.pk)
        self.assertEqual(room.assignee, self.user)
        self.assertEqual((room.conversation_state or {}).get("human", {}).get("operator"), self.user.get_username())
        self.assertIn("A human has it: olga", response.content.decode())  # the panel, re-rendered

    def test_a_viewer_reads_the_inbox_but_cannot_act_send_type_or_mark_read(self) -> None:
        watcher = logged_in(viewer())
        self.assertEqual(watcher.get(INBOX).status_code, 200)
        page = watcher.get(f"{INBOX}c/{self.room.pk}/").content.decode()
        self.assertNotIn('id="rk-composer-form"', page)
        before = snapshot(self.room.pk)
        for path, data in (
            (f"{INBOX}c/{self.room.pk}/action/assign/", {"assignee": "me"}),
            (f"{INBOX}c/{self.room.pk}/send/", {"text": "hi", "mode": "reply"}),
            (f"{INBOX}c/{self.room.pk}/typing/", {"state": "start"}),
            (f"{INBOX}c/{self.room.pk}/read/", {"seq": "1"}),
        ):
            with self.subTest(path=path):
                self.assertEqual(csrf_post(watcher, path, data).status_code, 403)
        self.assertEqual(snapshot(self.room.pk), before)

    def test_anonymous_and_non_staff_are_sent_to_the_login(self) -> None:
        from django.test import Client

        self.assertEqual(Client().get(INBOX).status_code, 302)


class ComposerTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)
        self.room = chat_room()
        say(self.room.pk, "hello")

    def send(self, **data):
        return csrf_post(self.client, f"{INBOX}c/{self.room.pk}/send/", data, HTTP_HX_REQUEST="true")

    def test_a_reply_is_stored_once_and_answers_a_fresh_composer(self) -> None:
        response = self.send(mode="reply", text="We are on it", token="tok-1")
        self.assertEqual(response.status_code, 200)
        self.assertIn('id="rk-composer-form"', response.content.decode())
        trigger = json.loads(response.headers["HX-Trigger"])
        self.assertEqual(trigger["rk-sent"]["mode"], "reply")
        self.send(mode="reply", text="We are on it", token="tok-1")  # a double submit
        replies = RoomEvent.objects.filter(room=self.room, content__body="We are on it")
        self.assertEqual(replies.count(), 1)
        self.assertEqual(replies.get().visibility, Visibility.ALL)

    def test_a_note_is_internal(self) -> None:
        self.send(mode="note", text="VIP, be nice", token="n-1")
        note = RoomEvent.objects.get(room=self.room, content__body="VIP, be nice")
        self.assertEqual((note.type, note.visibility), (EventType.NOTE, Visibility.INTERNAL))

    def test_empty_or_unknown_mode_is_a_400_and_stores_nothing(self) -> None:
        before = snapshot(self.room.pk)
        self.assertEqual(self.send(mode="reply", text="   ", token="e").status_code, 400)
        self.assertEqual(self.send(mode="shout", text="hey", token="f").status_code, 400)
        self.assertEqual(snapshot(self.room.pk), before)

    def test_saved_replies_by_shortcut_prefix(self) -> None:
        CannedResponse.objects.create(shortcut="refund", text="Refunds take 5 days.")
        CannedResponse.objects.create(shortcut="hello", text="Hi! How can I help?")
        found = self.client.get(f"{INBOX}canned/", {"q": "/ref"}).json()["results"]
        self.assertEqual(found, [{"shortcut": "refund", "text": "Refunds take 5 days."}])
        self.assertEqual(len(self.client.get(f"{INBOX}canned/").json()["results"]), 2)

    def test_typing_makes_the_operator_a_participant_of_the_room_once(self) -> None:
        for state in ("start", "stop", "start"):
            self.assertEqual(csrf_post(self.client, f"{INBOX}c/{self.room.pk}/typing/", {"state": state}).status_code, 204)
        operators = Participant.objects.filter(room=self.room, role=ParticipantRole.OPERATOR)
        self.assertEqual([(p.address, p.display_name) for p in operators], [("olga", "Olga")])
        self.assertEqual(csrf_post(self.client, f"{INBOX}c/{self.room.pk}/typing/", {"state": "maybe"}).status_code, 400)
        # The operator's reply then comes from that same participant.
        self.send(mode="reply", text="typed it", token="t")
        reply = RoomEvent.objects.get(room=self.room, content__body="typed it")
        self.assertEqual(reply.source_participant_id, operators.get().pk)

    def test_reading_moves_the_team_marker_and_the_operators_read_receipt(self) -> None:
        last = Room.objects.get(pk=self.room.pk).last_seq
        response = csrf_post(self.client, f"{INBOX}c/{self.room.pk}/read/", {"seq": str(last + 50)})
        self.assertEqual(response.json(), {"read_seq": last})
        me = Participant.objects.get(room=self.room, role=ParticipantRole.OPERATOR)
        self.assertEqual(me.last_read_seq, last)
        self.assertEqual(csrf_post(self.client, f"{INBOX}c/{self.room.pk}/read/", {"seq": "x"}).status_code, 400)


class RoundRobinTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room()

    def test_an_agents_handoff_to_a_human_goes_to_the_online_operator_assigned_longest_ago(self) -> None:
        first, second, away = operator("ann"), operator("ben"), operator("cid")
        for user in (first, second, away):
            inbox.presence_joined(user)
        inbox.presence_set_away(away, True)
        OperatorPresence.objects.filter(user=first).update(last_assigned_at=timezone.now())
        fire(HookTrigger.ON_HANDOFF, {"room_id": self.room.pk, "to_agent": "human", "from_agent": "triage"}, None)
        self.assertEqual(Room.objects.get(pk=self.room.pk).assignee, second)
        other = chat_room("next", sender="zed", sms=None)
        fire(HookTrigger.ON_HANDOFF, {"room_id": other.pk, "to_agent": "human", "from_agent": "triage"}, None)
        self.assertEqual(Room.objects.get(pk=other.pk).assignee, first)

    def test_nobody_online_leaves_it_unassigned_and_offline_is_offline(self) -> None:
        ann = operator("ann")
        inbox.presence_joined(ann)
        inbox.presence_left(ann)
        self.assertIsNone(inbox.offer_round_robin(self.room.pk))
        self.assertEqual(OperatorPresence.objects.get(user=ann).status, "offline")
        self.assertIsNone(Room.objects.get(pk=self.room.pk).assignee)

    def test_a_stale_presence_count_does_not_keep_an_operator_online(self) -> None:
        ann = operator("ann")
        inbox.presence_joined(ann)
        OperatorPresence.objects.filter(user=ann).update(last_seen_at=timezone.now() - timedelta(minutes=10))
        self.assertEqual(inbox.online_operators(), [])
        inbox.presence_joined(ann)  # a new socket starts the count again
        self.assertEqual(OperatorPresence.objects.get(user=ann).sockets, 1)


class LandingTests(TestCase):
    def test_logging_in_lands_in_the_inbox_unless_asked_for_elsewhere(self) -> None:
        from django.test import Client

        from tests.console.helpers import PASSWORD

        user = operator()
        client = Client()
        page = client.get("/admin/login/").content.decode()
        self.assertIn('name="next" value="/admin/inbox/"', page)
        response = client.post("/admin/login/", {"username": user.get_username(), "password": PASSWORD, "next": "/admin/inbox/"})
        self.assertEqual(response.headers["Location"], "/admin/inbox/")
        self.assertIn('value="/admin/rooms/room/"', Client().get("/admin/login/?next=/admin/rooms/room/").content.decode())
        # The dashboard stays at /admin/, with the way to the inbox.
        self.assertIn('href="/admin/inbox/"', client.get("/admin/").content.decode())


class AttachmentTests(TestCase):
    def setUp(self) -> None:
        import shutil
        import tempfile

        from django.test import override_settings

        media = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, media, ignore_errors=True)
        override = override_settings(MEDIA_ROOT=media)
        override.enable()
        self.addCleanup(override.disable)
        sms_and_web_channels()
        self.client = logged_in(operator())
        self.room = chat_room()
        say(self.room.pk, "hello")

    def send(self, upload, **data):
        return csrf_post(self.client, f"{INBOX}c/{self.room.pk}/send/", {"mode": "reply", "token": "a1", **data, "file": upload})

    def test_an_image_is_sent_as_media_with_the_text_as_its_caption(self) -> None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        from tests.e2e.support import png_bytes

        response = self.send(SimpleUploadedFile("receipt.png", png_bytes(4, 4, (200, 10, 10)), "image/png"), text="Your receipt")
        self.assertEqual(response.status_code, 200, response.content)
        event = RoomEvent.objects.filter(room=self.room).latest("seq")
        self.assertEqual(
            {k: event.content.get(k) for k in ("type", "mime_type", "filename", "caption")},
            {"type": "media", "mime_type": "image/png", "filename": "receipt.png", "caption": "Your receipt"},
        )
        self.assertTrue(event.content["url"].startswith("http"))
        page = self.client.get(f"{INBOX}c/{self.room.pk}/").content.decode()
        self.assertIn(event.content["url"], page)  # previewed in the timeline

    def test_a_file_that_is_no_image_is_refused_and_nothing_is_stored(self) -> None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        before = snapshot(self.room.pk)
        response = self.send(SimpleUploadedFile("x.png", b"#!/bin/sh\necho hi\n", "image/png"))
        self.assertEqual(response.status_code, 415)
        self.assertEqual(snapshot(self.room.pk), before)
