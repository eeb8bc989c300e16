"""Dead letters in the Delivery admin: dead and failed deliveries are listed with what the vendor
said, in a bounded number of queries, and operators send them again, one by one or in bulk,
through the console's ``retry_delivery`` action (channels_app's ``delivery_retry``). The admin never
edits or deletes a delivery.

``relaysms`` is a real provider for these tests (registered in setUp, removed in tearDown): it sends
over HTTP to a local fake vendor, reports the vendor's error codes, and takes signed status callbacks.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

import httpx
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from channels_app import resilience
from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers import InboundParse, ProviderSpec, SendResult, StatusUpdate, register_provider
from channels_app.providers import base as provider_registry
from rooms.content.kinds import content_text
from rooms.enums import ChannelType
from rooms.inbound import InboundMessage, InboundResult
from rooms.models import AuditEntry, Channel, Delivery
from tests.console.helpers import chat_room, csrf_post, logged_in, make_user, operator, say, viewer
from tests.support import FakeHTTPServer, make_channel

API_KEY = "relay-key-0b7e"
CALLBACK_SECRET = "relay-callback-5c1d"


class RelaySMSProvider:
    """An SMS vendor: JSON send with a Bearer key, error codes in its error bodies, signed status callbacks."""

    name = "relaysms"
    spec = ProviderSpec(label="Relay SMS", channel_types=frozenset({"sms"}), secrets=("api_key", "callback_secret"))

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        expected = hmac.new((channel.get_secret("callback_secret") or "").encode(), request.body, "sha256").hexdigest()
        return hmac.compare_digest(request.headers.get("X-Relay-Signature", ""), expected)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        data = json.loads(request.body)
        return InboundParse([InboundMessage(channel_id=channel.id, sender=data["from"], text=data["text"])])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return JsonResponse({"ok": True})

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        data = json.loads(request.body)
        return [StatusUpdate(data["id"], data["status"], error=data.get("error", ""), error_code=data.get("code", ""))]

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        body = {"to": delivery.recipient, "text": content_text(delivery.content)}
        try:
            response = http_client().post(
                channel.config["api_base"] + "/messages",
                json=body,
                headers={"Authorization": f"Bearer {channel.get_secret('api_key')}"},
                timeout=5,
            )
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if response.status_code >= 300:
            failure = failure_for_response(response)
            failure.error_code = str(response.json().get("code", ""))
            return failure
        return SendResult(True, provider_message_id=response.json()["id"], status="queued", sent_as="sms")


def signed_status(client: Any, payload: dict[str, str]):
    body = json.dumps(payload).encode()
    signature = hmac.new(CALLBACK_SECRET.encode(), body, "sha256").hexdigest()
    return client.post("/webhooks/sms/status/", body, content_type="application/json", HTTP_X_RELAY_SIGNATURE=signature)


def list_rows(html: str) -> dict[int, str]:
    """The change list's rows by delivery id."""
    rows = re.findall(r"<tr[^>]*>(?:(?!</tr>).)*</tr>", html, re.S)
    found = {}
    for row in rows:
        pk = re.search(r'name="_selected_action" value="(\d+)"', row)
        if pk:
            found[int(pk.group(1))] = row
    return found


class DeadLetterTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.vendor = cls.enterClassContext(FakeHTTPServer())

    def setUp(self) -> None:
        register_provider("relaysms", RelaySMSProvider)
        self.addCleanup(provider_registry._registry.pop, "relaysms", None)
        self.addCleanup(provider_registry._instances.pop, "relaysms", None)
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.vendor.requests.clear()
        self.vendor.handler = None
        self.vendor.responses = []
        self.vendor.default = (202, {"id": "relay-ok"}, {})
        make_channel(
            "sms",
            channel_type=ChannelType.SMS,
            provider="relaysms",
            config={"api_base": self.vendor.url, "retry": {"max_retries": 0}},
            secrets={"api_key": API_KEY, "callback_secret": CALLBACK_SECRET},
        )
        make_channel("web", channel_type=ChannelType.WEBSOCKET, provider="")
        self.room = chat_room("Support")
        self.root = logged_in(make_user("root", superuser=True))

    def deliver(self, text: str, answer: tuple[int, Any]) -> Delivery:
        """Say ``text`` in the room; the vendor answers ``answer`` to its one send attempt."""
        self.vendor.responses = [(answer[0], answer[1], {})]
        with self.captureOnCommitCallbacks(execute=True):
            result = say(self.room.pk, text)
        return Delivery.objects.get(event_id=result.event_id, channel_id="sms")

    def retry(self, client: Any, ids: list[int]):
        with self.captureOnCommitCallbacks(execute=True):
            return csrf_post(client, "/admin/rooms/delivery/", {"action": "retry_deliveries", ACTION_CHECKBOX_NAME: ids})

    def messages_of(self, response) -> list[str]:
        return [str(m) for m in response.wsgi_request._messages]


class DeadLetterListTests(DeadLetterTestCase):
    def test_dead_and_failed_deliveries_are_listed_with_what_the_vendor_said(self) -> None:
        dead = self.deliver("first", (503, {"code": "svc_down", "message": "try later"}))
        refused = self.deliver("second", (400, {"code": "21211", "message": "invalid 'To'"}))
        accepted = self.deliver("third", (202, {"id": "relay-77"}))
        with self.captureOnCommitCallbacks(execute=True):
            r = signed_status(self.client, {"id": "relay-77", "status": "failed", "code": "30008", "error": "unknown error"})
        self.assertEqual(r.status_code, 200, r.content)
        sent = self.deliver("fourth", (202, {"id": "relay-78"}))

        html = self.root.get("/admin/rooms/delivery/?dead_letters=yes").content.decode()

        rows = list_rows(html)
        self.assertEqual(set(rows), {dead.pk, refused.pk, accepted.pk})
        self.assertNotIn(sent.pk, rows)
        self.assertEqual(Delivery.objects.get(pk=dead.pk).status, "dead")
        for pk, words in (
            (dead.pk, ["dead", "svc_down", "HTTP 503"]),
            (refused.pk, ["failed", "21211", "HTTP 400"]),
            (accepted.pk, ["failed", "30008", "unknown error", "relay-77", "sms"]),
        ):
            for word in words:
                self.assertIn(word, rows[pk], (pk, word))
            self.assertIn('<td class="field-attempts">1</td>', rows[pk])
            self.assertRegex(rows[pk], r'<td class="field-segments">1</td>')
            self.assertIn(f"/admin/rooms/delivery/{pk}/retry/", rows[pk])
            self.assertIn(f"/admin/rooms/room/{self.room.pk}/console/", rows[pk])
        only_dead = self.root.get("/admin/rooms/delivery/?dead_letters=dead").content.decode()
        self.assertIn(f'value="{dead.pk}"', only_dead)
        self.assertNotIn(f'value="{refused.pk}"', only_dead)

    def test_the_list_takes_the_same_few_queries_for_3_rows_or_30(self) -> None:
        for i in range(3):
            self.deliver(f"m{i}", (503, {"code": "down"}))
        self.root.get("/admin/rooms/delivery/?dead_letters=yes")  # warm the session and content types
        with CaptureQueriesContext(connection) as few:
            self.assertEqual(self.root.get("/admin/rooms/delivery/?dead_letters=yes").status_code, 200)
        for i in range(27):
            self.deliver(f"n{i}", (400, {"code": "bad"}))

        with self.assertNumQueries(len(few)):
            html = self.root.get("/admin/rooms/delivery/?dead_letters=yes").content.decode()

        self.assertEqual(len(list_rows(html)), 30)
        # session, user, the channel filter's choices, two counts, the page of rows (events and channels joined)
        self.assertLessEqual(len(few), 6, [q["sql"] for q in few])


class RetryTests(DeadLetterTestCase):
    def test_bulk_retry_queues_the_dead_and_failed_ones_sends_them_again_and_refuses_the_rest(self) -> None:
        dead = self.deliver("first", (503, {"code": "svc_down"}))
        refused = self.deliver("second", (400, {"code": "21211"}))
        sent = self.deliver("third", (202, {"id": "relay-3"}))
        self.vendor.requests.clear()
        self.vendor.default = (202, {"id": "relay-again"}, {})

        response = self.retry(self.root, [dead.pk, refused.pk, sent.pk])

        self.assertEqual(response.status_code, 302)
        notes = self.messages_of(response)
        self.assertIn(f"2 deliveries queued again: {dead.pk}, {refused.pk}.", notes)
        self.assertIn(f"1 refused: {sent.pk}: delivery is queued; only failed or dead deliveries are retried", notes)
        self.assertEqual([r.json()["text"] for r in self.vendor.requests], ["first", "second"])
        self.assertEqual({r.headers["Authorization"] for r in self.vendor.requests}, {f"Bearer {API_KEY}"})
        for delivery in (dead, refused):
            row = Delivery.objects.get(pk=delivery.pk)
            self.assertEqual(
                (row.status, row.attempts, row.provider_message_id, row.last_error), ("queued", 1, "relay-again", "")
            )
        self.assertEqual(Delivery.objects.get(pk=sent.pk).status, "queued")
        audited = AuditEntry.objects.filter(action="retry_delivery", username="root")
        self.assertEqual(
            sorted(audited.values_list("target", flat=True)), sorted([f"delivery:{dead.pk}", f"delivery:{refused.pk}"])
        )

    def test_one_delivery_is_retried_from_its_own_confirmation_page(self) -> None:
        dead = self.deliver("first", (503, {"code": "svc_down"}))
        client = logged_in(operator())

        page = client.get(f"/admin/rooms/delivery/{dead.pk}/retry/").content.decode()
        self.assertIn("svc_down", page)
        self.assertIn('value="Retry"', page)
        self.assertIn(
            f"/admin/rooms/delivery/{dead.pk}/retry/", client.get(f"/admin/rooms/delivery/{dead.pk}/change/").content.decode()
        )
        with self.captureOnCommitCallbacks(execute=True):
            response = csrf_post(client, f"/admin/rooms/delivery/{dead.pk}/retry/")

        self.assertEqual(response.status_code, 302)
        self.assertEqual(self.messages_of(response), [f"1 delivery queued again: {dead.pk}."])
        self.assertEqual(Delivery.objects.get(pk=dead.pk).status, "queued")

    def test_a_delivered_delivery_is_refused_and_left_as_it_is(self) -> None:
        delivery = self.deliver("first", (202, {"id": "relay-9"}))
        with self.captureOnCommitCallbacks(execute=True):
            signed_status(self.client, {"id": "relay-9", "status": "delivered"})
        before = Delivery.objects.filter(pk=delivery.pk).values().get()
        self.assertEqual(before["status"], "delivered")
        self.vendor.requests.clear()

        page = self.root.get(f"/admin/rooms/delivery/{delivery.pk}/retry/").content.decode()
        single = csrf_post(self.root, f"/admin/rooms/delivery/{delivery.pk}/retry/")
        bulk = self.retry(self.root, [delivery.pk])

        self.assertIn("Only failed or dead deliveries are retried; this one is delivered.", page)
        for response in (single, bulk):
            self.assertEqual(
                self.messages_of(response),
                [f"1 refused: {delivery.pk}: delivery is delivered; only failed or dead deliveries are retried"],
            )
        self.assertEqual(Delivery.objects.filter(pk=delivery.pk).values().get(), before)
        self.assertEqual(self.vendor.requests, [])
        self.assertFalse(AuditEntry.objects.filter(action="retry_delivery").exists())

    def test_viewers_cannot_retry_and_nobody_edits_or_deletes_a_delivery(self) -> None:
        dead = self.deliver("first", (503, {"code": "svc_down"}))
        before = Delivery.objects.filter(pk=dead.pk).values().get()
        watcher = logged_in(viewer())

        listing = watcher.get("/admin/rooms/delivery/?dead_letters=yes").content.decode()
        self.assertIn("svc_down", listing)
        self.assertNotIn("retry_deliveries", listing)
        self.assertNotIn("/retry/", listing)
        self.assertEqual(csrf_post(watcher, f"/admin/rooms/delivery/{dead.pk}/retry/").status_code, 403)
        self.retry(watcher, [dead.pk])
        for client in (watcher, self.root):
            self.assertEqual(
                csrf_post(client, f"/admin/rooms/delivery/{dead.pk}/change/", {"status": "pending"}).status_code, 403
            )
            self.assertEqual(csrf_post(client, f"/admin/rooms/delivery/{dead.pk}/delete/", {"post": "yes"}).status_code, 403)
        self.assertNotIn('value="delete_selected"', self.root.get("/admin/rooms/delivery/").content.decode())
        self.assertEqual(Delivery.objects.filter(pk=dead.pk).values().get(), before)
