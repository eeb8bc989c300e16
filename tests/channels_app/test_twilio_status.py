"""Twilio status callbacks: ``POST /webhooks/<channel_id>/status/``, signed like inbound messages.

A delivery is first really sent to the fake Twilio (which gives it its
``SM…`` sid); callbacks from Twilio's documentation (fixtures/twilio), or the
sequence the fake says Twilio would post, then go through the view. A status
only moves forward: a late or repeated callback changes nothing.
"""

from __future__ import annotations

from rooms.models import Delivery
from tests.channels_app.fakes.twilio import fixture, post_as_twilio
from tests.channels_app.helpers import error_of
from tests.channels_app.test_twilio_inbound import TOKEN, twilio_channel
from tests.channels_app.test_twilio_outbound import TwilioOutboundTestCase

STATUS_URL = "/webhooks/tw-sms/status/"


class StatusCallbackTests(TwilioOutboundTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.open_room(messaging_service_sid=None)
        self.delivery_id = self.delivery(self.say("hello")["event_id"]).pk
        (self.sid,) = self.twilio.messages

    def report(self, name_or_form, *, path: str = STATUS_URL, token: str | None = TOKEN, **changes):
        form = fixture(name_or_form) if isinstance(name_or_form, str) else dict(name_or_form)
        if "MessageSid" in form:
            form["MessageSid"] = form["SmsSid"] = self.sid
        form.update(changes)
        with self.captureOnCommitCallbacks(execute=True):
            return post_as_twilio(self.client, path, form, auth_token=token)

    def row(self) -> Delivery:
        return Delivery.objects.get(pk=self.delivery_id)

    def assertUpdated(self, response, count: int) -> None:
        self.assertEqual((response.status_code, response.json()), (200, {"updated": count}), response.content[:300])

    def test_documented_callbacks_move_the_delivery_forward(self) -> None:
        self.assertEqual(self.row().status, "queued")

        self.assertUpdated(self.report("status_sent.json"), 1)
        self.assertEqual(self.row().status, "sent")

        self.assertUpdated(self.report("status_delivered.json"), 1)
        row = self.row()
        self.assertEqual((row.status, row.error_code, row.last_error), ("delivered", "", ""))

    def test_a_late_or_repeated_callback_never_moves_it_back(self) -> None:
        self.report("status_delivered.json")

        for late in ("queued", "sending", "sent", "delivered", "accepted"):
            with self.subTest(late=late):
                self.assertUpdated(self.report("status_sent.json", MessageStatus=late, SmsStatus=late), 0)
                self.assertEqual(self.row().status, "delivered")

    def test_twilios_callbacks_arriving_out_of_order_end_at_the_furthest(self) -> None:
        callbacks = self.twilio.status_callbacks(self.sid, final="delivered")

        for form in reversed(callbacks):
            self.report(form)

        self.assertEqual(self.row().status, "delivered")

    def test_twilios_callbacks_in_order_reach_delivered(self) -> None:
        for form in self.twilio.status_callbacks(self.sid, final="delivered"):
            self.report(form)

        self.assertEqual(self.row().status, "delivered")

    def test_undelivered_records_twilios_error_code(self) -> None:
        self.assertUpdated(self.report("status_undelivered.json"), 1)

        row = self.row()
        self.assertEqual((row.status, row.error_code), ("undelivered", "30003"))
        self.assertIn("error 30003", row.last_error)

    def test_failed_is_final(self) -> None:
        self.report("status_undelivered.json", MessageStatus="failed", SmsStatus="failed", ErrorCode="30007")
        self.assertUpdated(self.report("status_delivered.json"), 0)
        row = self.row()
        self.assertEqual((row.status, row.error_code), ("failed", "30007"))

    def test_read_comes_after_delivered(self) -> None:
        self.report("status_delivered.json")
        self.assertUpdated(self.report("status_delivered.json", MessageStatus="read", SmsStatus="read"), 1)
        self.assertEqual(self.row().status, "read")

    def test_statuses_of_inbound_messages_change_nothing(self) -> None:
        for status in ("receiving", "received", "partially_delivered"):
            with self.subTest(status=status):
                self.assertUpdated(self.report("status_sent.json", MessageStatus=status, SmsStatus=status), 0)
        self.assertEqual(self.row().status, "queued")

    def test_an_unknown_message_changes_nothing(self) -> None:
        form = fixture("status_delivered.json")
        form["MessageSid"] = form["SmsSid"] = "SM" + "0" * 32
        with self.captureOnCommitCallbacks(execute=True):
            response = post_as_twilio(self.client, STATUS_URL, form, auth_token=TOKEN)
        self.assertUpdated(response, 0)
        self.assertEqual(self.row().status, "queued")

    def test_unsigned_wrongly_signed_or_foreign_callbacks_are_refused(self) -> None:
        cases = {
            "no signature": ({"token": None}, 403, "invalid_signature"),
            "another token": ({"token": "f" * 32}, 403, "invalid_signature"),
            "another account": ({"AccountSid": "AC" + "8" * 32}, 403, "wrong_account"),
            "no message sid": ({"MessageSid": "", "SmsSid": ""}, 400, "missing_field"),
            "no status": ({"MessageStatus": "", "SmsStatus": ""}, 400, "missing_field"),
        }
        for name, (change, status, code) in cases.items():
            with self.subTest(name):
                token = change.pop("token", TOKEN)
                error_of(self, self.report("status_delivered.json", token=token, **change), status, code)
                self.assertEqual(self.row().status, "queued")

    def test_another_channel_cannot_report_on_this_channels_deliveries(self) -> None:
        twilio_channel("tw-other", api_base=self.twilio.url)

        self.assertUpdated(self.report("status_delivered.json", path="/webhooks/tw-other/status/"), 0)
        self.assertEqual(self.row().status, "queued")
