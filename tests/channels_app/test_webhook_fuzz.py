"""Every vendor's webhook, fed validly signed payloads it did not expect: never a 500, and a refusal stores nothing.

A signature only proves who sent a request, not that its body is what the
adapter expects: a vendor changes a field's type, drops one, or sends an event
kind nobody documented. Each test here starts from the vendor's documented
payloads (the adapters' fixtures), changes one to three places in them at
random (a value replaced by any JSON value — null, a huge integer, a NUL, a
lone surrogate, a list, an object — or a key removed; now and then the whole
document replaced), signs the result as the vendor signs, and posts it
through the real view. The answer must be a 2xx
or a 4xx in the contract's error shape, and a 4xx must leave every room
table as it was.

Hypothesis draws the changes from a fixed seed (``derandomize``): every run
posts the same payloads, so a failure here is a bug to fix, never luck.
Nothing may leave this machine: name resolution of any host but the loopback
fails during these tests, as a dead network would.
"""

from __future__ import annotations

import copy
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from django.test import TestCase, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Modules, not their classes: a TestCase imported here would be collected and run again as this module's.
from tests.channels_app import (
    test_messenger,
    test_sinch_webhooks,
    test_teams_support,
    test_telegram_support,
    test_telnyx_support,
    test_twilio_inbound,
    test_voicemeup_webhooks,
    test_whatsapp_support,
)
from tests.channels_app.fakes import meta, telegram, telnyx, twilio
from tests.channels_app.helpers import error_of, row_counts
from tests.concurrency.processes import quiet_logger
from tests.support import make_channel, post_signed

# Deterministic (see the module), quick, and no example database left behind.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "0", "-1", "1e400", "+", "https://", "💬" * 3, "a" * 5000]),
)
JSON_VALUES = st.recursive(
    _LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6
)
# Form fields are text: what Twilio's urlencoded bodies can carry (no lone surrogates: they have no UTF-8).
FORM_VALUES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(["", "\x00", "0", "-1", "99999999999999999999", "1.5", "abc", "+", "💬" * 3, "a" * 5000]),
)


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a JSON document, as the keys and indexes that lead to it."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def mutate(data: st.DataObject, doc: Any, values: st.SearchStrategy = JSON_VALUES, *, whole: bool = True) -> Any:
    """A copy of ``doc`` with one to three places replaced by drawn values or (in objects) removed.

    ``whole``: one time in ten the document itself is replaced (a list, a
    string, ``null``… where an object was expected).
    """
    if whole and data.draw(st.integers(0, 9), label="whole") == 0:
        return data.draw(values, label="document")
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        places = list(_paths(doc))
        if not places:
            break
        path = data.draw(st.sampled_from(places), label="where")
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans(), label="remove"):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(values, label="value")
    return doc


def _loopback_only(real: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1", b"localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"no network in tests ({host!r})")
        return real(host, *args, **kwargs)

    return getaddrinfo


class FuzzMixin:
    """What every vendor's fuzz test checks of one answer."""

    def setUp(self) -> None:
        super().setUp()
        guard = mock.patch("socket.getaddrinfo", _loopback_only(socket.getaddrinfo))
        guard.start()
        self.addCleanup(guard.stop)
        # Hundreds of refusals and oddities, each logged as it should be: not in the test run's output.
        for name in ("django.request", "channels_app", "rooms"):
            quiet_logger(self, name, logging.CRITICAL)

    def fuzz(self, names: list[str], post: Callable[[st.DataObject, str], Any]) -> None:
        """Post what ``post`` makes of each drawn example (a fixture's name, draws for its changes); check each answer.

        Hypothesis runs inside the test rather than as ``@given`` on it: every
        example shares the test's transaction, which the checks allow for
        (they compare row counts around each request).
        """

        @FUZZ
        @given(st.data(), st.sampled_from(names))
        def example(data: st.DataObject, name: str) -> None:
            self.check(lambda: post(data, name))

        example()

    def check(self, post: Callable[[], Any]) -> None:
        before = row_counts()
        response = post()
        self.assertLess(response.status_code, 500, response.content[:500])
        if response.status_code >= 400:
            error_of(self, response, response.status_code)
            self.assertEqual(row_counts(), before, f"a {response.status_code} must store nothing")


class GenericHttpFuzzTests(FuzzMixin, TestCase):
    def setUp(self) -> None:
        super().setUp()
        make_channel("fz-http", secrets={"signing_secret": "fz-secret"})

    def test_inbound(self) -> None:
        payload = {"sender": "crm-1", "text": "hello", "provider_message_id": "m-1", "metadata": {"k": "v"}}
        self.fuzz(["-"], lambda data, _: post_signed(self.client, "/webhooks/fz-http/", mutate(data, payload), "fz-secret"))

    def test_status(self) -> None:
        payload = {"provider_message_id": "m-1", "status": "delivered", "error_code": None}
        path = "/webhooks/fz-http/status/"
        self.fuzz(["-"], lambda data, _: post_signed(self.client, path, mutate(data, payload), "fz-secret"))


@override_settings(PUBLIC_BASE_URL=test_twilio_inbound.BASE)
class TwilioFuzzTests(FuzzMixin, test_twilio_inbound.TwilioInboundTestCase):
    def test_inbound(self) -> None:
        self.fuzz(
            ["inbound_sms.json", "inbound_location.json", "inbound_rcs_button.json"],
            lambda data, name: self.post(mutate(data, twilio.fixture(name), FORM_VALUES, whole=False)),
        )

    def test_status(self) -> None:
        self.fuzz(
            ["status_sent.json", "status_delivered.json", "status_undelivered.json"],
            lambda data, name: self.post(
                mutate(data, twilio.fixture(name), FORM_VALUES, whole=False), path="/webhooks/tw-sms/status/"
            ),
        )


class TelnyxFuzzTests(FuzzMixin, test_telnyx_support.TelnyxTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telnyx_channel()

    def test_events(self) -> None:
        self.fuzz(
            ["inbound_sms.json", "message_sent.json", "message_finalized.json", "message_finalized_failed.json"],
            lambda data, name: self.post_webhook("/webhooks/tx-sms/", mutate(data, telnyx.fixture(name))),
        )


class SinchFuzzTests(FuzzMixin, test_sinch_webhooks.SinchInboundTestCase):
    def test_inbound(self) -> None:
        self.fuzz(
            ["mo_text.json", "mo_binary.json", "delivery_report_sms.json"],
            lambda data, name: self.post(mutate(data, test_sinch_webhooks.fixture(name))),
        )

    def test_status(self) -> None:
        self.fuzz(
            ["recipient_delivery_report_delivered.json", "recipient_delivery_report_aborted.json"],
            lambda data, name: self.post(mutate(data, test_sinch_webhooks.fixture(name)), path="/webhooks/sinch-sms/status/"),
        )


class VoiceMeUpFuzzTests(FuzzMixin, test_voicemeup_webhooks.VoiceMeUpInboundTestCase):
    def test_inbound(self) -> None:
        self.fuzz(["inbound_sms.json"], lambda data, name: self.post(mutate(data, test_voicemeup_webhooks.fixture(name))))


class WhatsAppFuzzTests(FuzzMixin, test_whatsapp_support.WhatsAppTestCase):
    def test_webhook(self) -> None:
        self.fuzz(
            ["text.json", "button_reply.json", "list_reply.json", "location.json", "reaction.json", "contacts.json"]
            + ["status_sent.json", "status_delivered.json", "status_read.json", "status_failed.json"],
            lambda data, name: self.post_webhook(mutate(data, meta.fixture("whatsapp", name))),
        )


class MessengerFuzzTests(FuzzMixin, test_messenger.MessengerTestCase):
    def test_webhook(self) -> None:
        self.fuzz(
            ["text.json", "postback.json", "quick_reply.json", "echo.json", "delivery.json", "read.json"],
            lambda data, name: self.post_webhook(mutate(data, meta.fixture("messenger", name))),
        )


class TelegramFuzzTests(FuzzMixin, test_telegram_support.TelegramTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telegram_channel()

    def test_update(self) -> None:
        self.fuzz(
            ["update_text.json", "update_callback_query.json", "update_edited_message.json", "update_location.json"],
            lambda data, name: self.post_update(mutate(data, telegram.fixture(name))),
        )


class TeamsFuzzTests(FuzzMixin, test_teams_support.TeamsTestCase):
    def test_activity(self) -> None:
        self.fuzz(
            ["message_personal.json", "message_channel_mention.json", "message_card_submit.json"]
            + ["conversation_update_members_added.json", "conversation_update_members_removed.json"],
            lambda data, name: self.post_activity(mutate(data, self.activity(name))),
        )
