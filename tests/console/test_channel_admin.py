"""The channel page follows the registered providers: the choices serve the channel type, each
provider's config fields and secrets are on the form, secrets are write-only, a save is checked as
``add_channel`` checks it, the webhook URLs are shown where the provider takes webhooks (with the
token where the vendor cannot sign), and "Send a test message" goes out through the provider.

The providers here are real providers for these tests (registered in setUp, removed in
tearDown): ``textbridge`` sends over real HTTP to a local fake server and needs E.164 recipients,
``tokenlink`` cannot sign (its webhook URL carries a token), ``pushonly`` takes no webhooks.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any

import httpx
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import TestCase, override_settings

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers import (
    ConfigField,
    InboundParse,
    ProviderSpec,
    SendResult,
    StatusUpdate,
    provider_names,
    register_provider,
)
from channels_app.providers import base as provider_registry
from rooms.content.kinds import content_text
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage, InboundResult
from rooms.models import AuditEntry, Channel, Delivery, Room
from tests.console.helpers import csrf_post, logged_in, make_user, operator
from tests.support import FakeHTTPServer, make_channel

API_KEY = "tb-api-key-6a1f0c"
OTHER_KEY = "tb-api-key-rotated-99d2"
CALLBACK_SECRET = "tb-callback-secret-31e"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class TextBridgeProvider:
    """An SMS vendor with a JSON API: Bearer ``api_key``, E.164 ``to`` only, signed webhooks."""

    name = "textbridge"
    spec = ProviderSpec(
        label="TextBridge SMS",
        channel_types=frozenset({"sms", "rcs"}),
        config_fields=(
            ConfigField("account_id", "Account ID", required=True, help="From the TextBridge console"),
            ConfigField("from", "Sender number", help="E.164 <b>number</b> to send from"),
            ConfigField("messaging_pool", "Messaging pool", help="Or a pool of numbers"),
            ConfigField("api_base", "API base URL", help="Default https://api.textbridge.example"),
        ),
        secrets=("api_key", "callback_secret"),
        required_secrets=("api_key",),
        webhook="signature",
        one_of=(("from", "messaging_pool"),),
    )

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        secret = channel.get_secret("callback_secret") or ""
        given = request.headers.get("X-TextBridge-Signature", "")
        expected = hmac.new(secret.encode(), request.body, "sha256").hexdigest()
        return bool(secret) and hmac.compare_digest(given, expected)

    def parse_inbound(self, channel: Channel, request: HttpRequest) -> InboundParse:
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict) or not data.get("from") or not data.get("text"):
            raise InvalidInput("'from' and 'text' are required")
        return InboundParse([InboundMessage(channel_id=channel.id, sender=str(data["from"]), text=str(data["text"]))])

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return JsonResponse({"received": len(results)})

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate]:
        data = json.loads(request.body or b"{}")
        return [StatusUpdate(str(data["id"]), str(data["status"]))]

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return None

    def send(self, channel: Channel, delivery: Delivery) -> SendResult:
        if not E164.match(delivery.recipient):
            return SendResult(False, error=f"recipient {delivery.recipient!r} is not E.164", retryable=False)
        body = {"account": channel.config["account_id"], "to": delivery.recipient, "text": content_text(delivery.content)}
        headers = {"Authorization": f"Bearer {channel.get_secret('api_key')}"}
        try:
            response = http_client().post(channel.config["api_base"] + "/v1/messages", json=body, headers=headers, timeout=5)
        except httpx.HTTPError as exc:
            return failure_for_exception(exc)
        if response.status_code >= 300:
            return failure_for_response(response)
        return SendResult(True, provider_message_id=response.json()["id"])


class TokenLinkProvider(TextBridgeProvider):
    """A vendor that cannot sign its webhooks: the URL carries the channel's ``webhook_token``."""

    name = "tokenlink"
    spec = ProviderSpec(
        label="TokenLink",
        channel_types=frozenset({"sms"}),
        config_fields=(ConfigField("api_base", "API base URL"),),
        secrets=("api_key", "webhook_token"),
        required_secrets=("api_key", "webhook_token"),
        webhook="token",
    )

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        token = channel.get_secret("webhook_token") or ""
        return bool(token) and hmac.compare_digest(request.GET.get("token", ""), token)


class PushOnlyProvider(TextBridgeProvider):
    """Outbound only: no webhooks, no status callbacks."""

    name = "pushonly"
    spec = ProviderSpec(
        label="Push only",
        channel_types=frozenset({"voice"}),
        config_fields=(ConfigField("api_base", "API base URL", required=True),),
        webhook="",
        status_callbacks=False,
    )

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return False


TEST_PROVIDERS = (TextBridgeProvider, TokenLinkProvider, PushOnlyProvider)


def offered_providers(html: str) -> set[str]:
    """The provider options a person can pick: shown and enabled."""
    select = re.search(r'<select name="provider".*?</select>', html, re.S)
    assert select is not None, "no provider select on the page"
    options = re.findall(r"<option ([^>]*)>", select.group(0))
    return {
        re.search(r'value="([^"]*)"', attrs).group(1) for attrs in options if "disabled" not in attrs and "hidden" not in attrs
    }


def channel_form(channel_type: str = "sms", provider: str = "textbridge", **values: str) -> dict[str, str]:
    """The channel form as a browser posts it (blank policy fields, empty secret fields)."""
    data = {
        "id": "tb",
        "name": "TextBridge",
        "channel_type": channel_type,
        "provider": provider,
        "category": "transport",
        "config": "{}",
        "capabilities": "{}",
        "creates_rooms": "on",
        "enabled": "on",
        "new_secrets": "",
    }
    for name in (
        "retry_max_retries",
        "retry_base_delay_seconds",
        "retry_max_delay_seconds",
        "retry_multiplier",
        "circuit_breaker_failure_threshold",
        "circuit_breaker_recovery_timeout_seconds",
        "rate_limit_per_second",
        "rate_limit_per_minute",
        "rate_limit_per_hour",
    ):
        data[name] = ""
    for cls in TEST_PROVIDERS:
        for f in cls.spec.config_fields:
            data[f"cfg__{cls.name}__{f.name}"] = ""
        for s in cls.spec.secrets:
            if s != "webhook_token":
                data[f"secret__{cls.name}__{s}"] = ""
    data.update(values)
    return data


@override_settings(PUBLIC_BASE_URL="https://rk.example.com")
class ChannelAdminTestCase(TestCase):
    def setUp(self) -> None:
        for cls in TEST_PROVIDERS:
            register_provider(cls.name, cls)
        self.root = logged_in(make_user("root", superuser=True))
        self.bodies: list[str] = []

    def tearDown(self) -> None:
        for cls in TEST_PROVIDERS:
            provider_registry._registry.pop(cls.name, None)
            provider_registry._instances.pop(cls.name, None)

    def get(self, path: str, client: Any = None) -> str:
        response = (client or self.root).get(path)
        self.assertEqual(response.status_code, 200, path)
        self.bodies.append(response.content.decode())
        return self.bodies[-1]

    def post(self, path: str, data: dict[str, Any], client: Any = None):
        response = csrf_post(client or self.root, path, data)
        self.bodies.append(response.content.decode())
        return response

    def form_errors(self, response) -> dict[str, list[str]]:
        self.assertEqual(response.status_code, 200, "a refused save shows the form again")
        return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


class ProviderChoicesTests(ChannelAdminTestCase):
    def test_the_add_form_for_a_type_offers_only_the_providers_serving_it(self) -> None:
        # The vendors registered by the project serve their own types too (twilio, sinch… for sms).
        def registered(channel_type: str) -> set[str]:
            return {"", *provider_names(channel_type)}

        sms = offered_providers(self.get("/admin/rooms/channel/add/?channel_type=sms"))
        self.assertEqual(sms, registered("sms"))
        self.assertTrue({"http", "textbridge", "tokenlink"} <= sms)
        self.assertNotIn("pushonly", sms)
        voice = offered_providers(self.get("/admin/rooms/channel/add/?channel_type=voice"))
        self.assertEqual(voice, registered("voice"))
        self.assertTrue({"http", "pushonly"} <= voice)
        self.assertFalse({"textbridge", "tokenlink"} & voice)
        self.assertEqual(offered_providers(self.get("/admin/rooms/channel/add/?channel_type=websocket")), {"", "http"})

    def test_a_channel_s_page_offers_the_providers_of_its_type(self) -> None:
        make_channel("line", channel_type="voice", provider="pushonly", config={"api_base": "http://127.0.0.1:9"})

        offered = offered_providers(self.get("/admin/rooms/channel/line/change/"))
        # The project's own vendors for voice (twilio) are offered too.
        self.assertEqual(offered, {"", *provider_names("voice")})
        self.assertTrue({"http", "pushonly"} <= offered)
        self.assertNotIn("textbridge", offered)

    def test_without_a_type_the_page_asks_for_it_first_and_the_script_knows_each_provider_s_types(self) -> None:
        html = self.get("/admin/rooms/channel/add/")

        self.assertIn('href="?channel_type=sms"', html)
        self.assertIn('value="textbridge" data-channel-types="rcs sms"', html)
        self.assertIn('value="pushonly" data-channel-types="voice"', html)
        # The script comes from this site (CSP script-src 'self'; nothing from the network) and no script is inline.
        self.assertIn('<script src="/static/rooms/channel_form.js"></script>', html)
        self.assertEqual(re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html), [])
        script = self.client.get("/static/rooms/channel_form.js")
        self.assertEqual(script.status_code, 200)
        self.assertIn("rk-provider-", b"".join(script.streaming_content).decode())

    def test_each_provider_s_section_shows_its_config_fields_help_and_the_secrets_it_needs(self) -> None:
        html = self.get("/admin/rooms/channel/add/?channel_type=sms")

        section = re.search(r'<fieldset class="[^"]*rk-provider-textbridge.*?</fieldset>', html, re.S).group(0)
        self.assertIn("TextBridge SMS (textbridge)", section)
        self.assertIn("Account ID (account_id)", section)
        self.assertIn("From the TextBridge console Required.", section)
        self.assertIn("E.164 &lt;b&gt;number&lt;/b&gt; to send from", section, "a provider's help is text, not HTML")
        self.assertIn("Secrets: api_key (required), callback_secret (optional).", section)
        self.assertIn("At least one of: from, messaging_pool.", section)
        self.assertIn('name="secret__textbridge__api_key"', section)
        self.assertIn("Not set (required)", section)


class SecretsAreWriteOnlyTests(ChannelAdminTestCase):
    def test_a_channel_is_created_with_its_fields_and_its_secrets_never_come_back(self) -> None:
        # Every SQL statement is logged with its parameters while the page is used: the secret is in none.
        sql_logger, level = logging.getLogger("django.db.backends"), logging.getLogger("django.db.backends").level
        sql_logger.setLevel(logging.DEBUG)
        connection.force_debug_cursor = True
        with self.assertLogs(level="DEBUG") as logs:
            response = self.post(
                "/admin/rooms/channel/add/?channel_type=sms",
                channel_form(
                    **{
                        "cfg__textbridge__account_id": "AC-1",
                        "cfg__textbridge__from": "+15550001000",
                        "cfg__textbridge__api_base": "http://127.0.0.1:9",
                        "secret__textbridge__api_key": API_KEY,
                        "secret__textbridge__callback_secret": CALLBACK_SECRET,
                    }
                ),
            )
            self.get("/admin/rooms/channel/tb/change/")
        sql_logger.setLevel(level)
        connection.force_debug_cursor = False

        self.assertEqual(response.status_code, 302, response.content[:3000])
        channel = Channel.objects.get(pk="tb")
        self.assertEqual((channel.channel_type, channel.provider), ("sms", "textbridge"))
        self.assertEqual(channel.config, {"account_id": "AC-1", "from": "+15550001000", "api_base": "http://127.0.0.1:9"})
        self.assertEqual((channel.get_secret("api_key"), channel.get_secret("callback_secret")), (API_KEY, CALLBACK_SECRET))
        html = self.bodies[-1]
        self.assertIn("Set: leave empty to keep it (required)", html)
        self.assertRegex(html, r'<input type="password" name="secret__textbridge__api_key" autocomplete="new-password"[^>]*>')
        self.get("/admin/rooms/channel/")
        self.get("/admin/rooms/channel/tb/history/")
        for body in self.bodies:
            self.assertNotIn(API_KEY, body)
            self.assertNotIn(CALLBACK_SECRET, body)
            self.assertNotIn(channel.secrets_encrypted, body)
        for entry in LogEntry.objects.all():
            self.assertNotIn(API_KEY, entry.change_message)
        lines = [record.getMessage() for record in logs.records]
        self.assertTrue(any("INSERT INTO" in line and "rooms_channel" in line for line in lines), "the save was logged")
        for line in lines:
            self.assertNotIn(API_KEY, line)
            self.assertNotIn(CALLBACK_SECRET, line)

    def test_an_empty_secret_field_keeps_the_stored_secret_and_a_new_value_replaces_it(self) -> None:
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "AC-1", "from": "+15550001000"},
            secrets={"api_key": API_KEY},
        )
        form = channel_form(**{"cfg__textbridge__account_id": "AC-1", "cfg__textbridge__from": "+15550001000"})

        kept = self.post("/admin/rooms/channel/tb/change/", {**form, "name": "Renamed"})

        self.assertEqual(kept.status_code, 302, kept.content[:3000])
        channel = Channel.objects.get(pk="tb")
        self.assertEqual((channel.name, channel.get_secret("api_key")), ("Renamed", API_KEY))

        replaced = self.post("/admin/rooms/channel/tb/change/", {**form, "secret__textbridge__api_key": OTHER_KEY})

        self.assertEqual(replaced.status_code, 302)
        self.assertEqual(Channel.objects.get(pk="tb").get_secret("api_key"), OTHER_KEY)
        for body in [*self.bodies, self.get("/admin/rooms/channel/tb/change/")]:
            self.assertNotIn(API_KEY, body)
            self.assertNotIn(OTHER_KEY, body)

    def test_a_refused_save_does_not_echo_the_secret_typed(self) -> None:
        response = self.post(
            "/admin/rooms/channel/add/?channel_type=sms",
            channel_form(**{"secret__textbridge__api_key": API_KEY}),  # no account_id: refused
        )

        self.assertIn("cfg__textbridge__account_id", self.form_errors(response))
        self.assertNotIn(API_KEY, response.content.decode())
        self.assertFalse(Channel.objects.filter(pk="tb").exists())

    def test_operators_see_the_config_but_neither_secrets_nor_their_names(self) -> None:
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "AC-1", "from": "+15550001000"},
            secrets={"api_key": API_KEY},
        )
        from django.contrib.auth.models import Group, Permission

        reader = logged_in(operator())
        Group.objects.get(name="operator").permissions.add(Permission.objects.get(codename="view_channel"))

        html = self.get("/admin/rooms/channel/tb/change/", reader)

        self.assertIn("AC-1", html)
        self.assertNotIn("api_key", html)
        self.assertNotIn(API_KEY, html)
        self.assertNotIn('type="password"', html)


class ValidationTests(ChannelAdminTestCase):
    def test_each_problem_is_refused_on_the_field_that_has_it_and_nothing_is_saved(self) -> None:
        complete = {
            "cfg__textbridge__account_id": "AC-1",
            "cfg__textbridge__from": "+15550001000",
            "secret__textbridge__api_key": API_KEY,
        }
        cases = {
            "provider not serving the type": (
                {"provider": "pushonly", "cfg__pushonly__api_base": "http://x"},
                "provider",
                "does not serve sms",
            ),
            "unknown provider": ({"provider": "carrier-pigeon"}, "provider", "unknown provider 'carrier-pigeon'"),
            "required config missing": (
                {"cfg__textbridge__account_id": ""},
                "cfg__textbridge__account_id",
                "Account ID is required",
            ),
            "one_of group empty": (
                {"cfg__textbridge__from": ""},
                "cfg__textbridge__from",
                "one of from, messaging_pool is required",
            ),
            "required secret not set": (
                {"secret__textbridge__api_key": ""},
                "secret__textbridge__api_key",
                "api_key is required",
            ),
            "bad delivery policy": ({"rate_limit_per_second": "0"}, "rate_limit_per_second", ""),
            "config key set twice": (
                {"config": '{"account_id": "AC-2"}'},
                "cfg__textbridge__account_id",
                "also in the config JSON",
            ),
            "policy in the JSON": ({"config": '{"retry": {"max_retries": 1}}'}, "config", "delivery policy fields"),
            "capabilities not an object": ({"capabilities": "[1, 2]"}, "capabilities", "a JSON object is expected"),
        }
        for label, (values, field, words) in cases.items():
            with self.subTest(label):
                response = self.post("/admin/rooms/channel/add/?channel_type=sms", channel_form(**{**complete, **values}))
                errors = self.form_errors(response)
                self.assertIn(field, errors, errors)
                self.assertIn(words, " ".join(errors[field]))
                self.assertFalse(Channel.objects.filter(pk="tb").exists())

    def test_a_secret_already_stored_satisfies_the_requirement(self) -> None:
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "A", "from": "+1555"},
            secrets={"api_key": API_KEY},
        )

        response = self.post(
            "/admin/rooms/channel/tb/change/",
            channel_form(**{"cfg__textbridge__account_id": "A", "cfg__textbridge__messaging_pool": "pool-1"}),
        )

        self.assertEqual(response.status_code, 302, response.content[:3000])
        self.assertEqual(Channel.objects.get(pk="tb").config, {"account_id": "A", "messaging_pool": "pool-1"})

    def test_switching_provider_checks_the_new_one(self) -> None:
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "A", "from": "+1555"},
            secrets={"api_key": API_KEY},
        )

        response = self.post("/admin/rooms/channel/tb/change/", channel_form(provider="pushonly"))

        self.assertIn("provider", self.form_errors(response))
        self.assertEqual(Channel.objects.get(pk="tb").provider, "textbridge")

    def test_the_id_of_an_existing_channel_is_not_editable(self) -> None:
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "A", "from": "+1555"},
            secrets={"api_key": API_KEY},
        )

        response = self.post(
            "/admin/rooms/channel/tb/change/",
            channel_form(id="tb-copy", **{"cfg__textbridge__account_id": "A", "cfg__textbridge__from": "+1555"}),
        )

        self.assertEqual(response.status_code, 302)
        self.assertEqual(list(Channel.objects.values_list("pk", flat=True)), ["tb"])


class WebhookURLTests(ChannelAdminTestCase):
    def test_a_signing_provider_s_channel_shows_its_inbound_and_status_urls(self) -> None:
        make_channel(
            "tb", channel_type="sms", provider="textbridge", config={"account_id": "A", "from": "+1"}, secrets={"api_key": "k"}
        )

        html = self.get("/admin/rooms/channel/tb/change/")

        self.assertIn("https://rk.example.com/webhooks/tb/", html)
        self.assertIn("https://rk.example.com/webhooks/tb/status/", html)
        self.assertNotIn("?token=", html)

    def test_a_provider_without_webhooks_shows_none(self) -> None:
        make_channel("line", channel_type="voice", provider="pushonly", config={"api_base": "http://x"})

        html = self.get("/admin/rooms/channel/line/change/")

        self.assertNotIn("/webhooks/line/", html)
        self.assertIn("this channel&#x27;s provider takes no webhooks", html)
        self.assertNotIn("/webhooks/line/", self.get("/admin/rooms/channel/"))

    def test_a_token_provider_s_channel_gets_a_token_on_creation_and_shows_it_in_its_urls(self) -> None:
        response = self.post(
            "/admin/rooms/channel/add/?channel_type=sms",
            channel_form(id="tl", provider="tokenlink", **{"secret__tokenlink__api_key": API_KEY}),
        )
        self.assertEqual(response.status_code, 302, response.content[:3000])
        token = Channel.objects.get(pk="tl").get_secret("webhook_token")
        self.assertGreaterEqual(len(token or ""), 32)

        html = self.get("/admin/rooms/channel/tl/change/")

        self.assertIn(f"https://rk.example.com/webhooks/tl/?token={token}", html)
        self.assertIn(f"https://rk.example.com/webhooks/tl/status/?token={token}", html)
        self.assertIn("This vendor does not sign its webhooks", html)
        self.assertIn("the URLs themselves are the secret", html)
        self.assertIn("/admin/rooms/channel/tl/rotate-webhook-token/", html)
        self.assertNotIn(
            "webhook_token", re.search(r'<fieldset class="[^"]*rk-provider-tokenlink.*?</fieldset>', html, re.S).group(0)
        )
        # Others who may read the page see that there is a token, never the token.
        from django.contrib.auth.models import Group, Permission

        reader = logged_in(operator())
        Group.objects.get(name="operator").permissions.add(Permission.objects.get(codename="view_channel"))
        for page in ("/admin/rooms/channel/tl/change/", "/admin/rooms/channel/"):
            self.assertNotIn(token, self.get(page, reader))
        self.assertNotIn(token, self.get("/admin/rooms/channel/"), "the list never shows it")

    def test_rotating_the_token_makes_the_old_url_fail_and_the_new_one_work(self) -> None:
        self.post(
            "/admin/rooms/channel/add/?channel_type=sms",
            channel_form(id="tl", provider="tokenlink", **{"secret__tokenlink__api_key": API_KEY}),
        )
        old_url = re.search(
            r"https://rk\.example\.com(/webhooks/tl/\?token=[^<\"]+)", self.get("/admin/rooms/channel/tl/change/")
        ).group(1)
        message = json.dumps({"from": "+15550002222", "text": "hello"})
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.client.post(old_url, message, content_type="application/json").status_code, 200)

        confirm = self.get("/admin/rooms/channel/tl/rotate-webhook-token/")
        self.assertIn("stop working at once", confirm)
        rotated = self.post("/admin/rooms/channel/tl/rotate-webhook-token/", {})

        self.assertEqual(rotated.status_code, 302)
        new_url = re.search(
            r"https://rk\.example\.com(/webhooks/tl/\?token=[^<\"]+)", self.get("/admin/rooms/channel/tl/change/")
        ).group(1)
        self.assertNotEqual(new_url, old_url)
        self.assertEqual(self.client.post(old_url, message, content_type="application/json").status_code, 403)
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(self.client.post(new_url, message, content_type="application/json").status_code, 200)
        self.assertEqual(AuditEntry.objects.filter(action="rotate_webhook_token", target="channel:tl").count(), 1)

    def test_rotation_is_for_superusers_and_token_providers_only(self) -> None:
        make_channel(
            "tb", channel_type="sms", provider="textbridge", config={"account_id": "A", "from": "+1"}, secrets={"api_key": "k"}
        )
        before = Channel.objects.get(pk="tb").secrets_encrypted

        self.assertEqual(csrf_post(logged_in(operator()), "/admin/rooms/channel/tb/rotate-webhook-token/").status_code, 403)
        refused = self.post("/admin/rooms/channel/tb/rotate-webhook-token/", {})

        self.assertEqual(refused.status_code, 302)
        self.assertIn("not verified by a webhook token", self.get("/admin/rooms/channel/tb/change/"))
        self.assertEqual(Channel.objects.get(pk="tb").secrets_encrypted, before)


class SendTestMessageTests(ChannelAdminTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.vendor = cls.enterClassContext(FakeHTTPServer())

    def setUp(self) -> None:
        super().setUp()
        self.vendor.requests.clear()

        def answer(request):
            if request.headers.get("Authorization") != f"Bearer {API_KEY}" or request.path != "/v1/messages":
                return 401, {"error": "unauthorized"}, {}
            return 202, {"id": f"tbm-{len(self.vendor.requests)}"}, {}

        self.vendor.handler = answer
        make_channel(
            "tb",
            channel_type="sms",
            provider="textbridge",
            config={"account_id": "AC-1", "from": "+15550001000", "api_base": self.vendor.url},
            secrets={"api_key": API_KEY},
        )

    def send_test(self, recipient: str, channel: str = "tb"):
        with self.captureOnCommitCallbacks(execute=True):
            return self.post(
                "/admin/rooms/channel/",
                {"action": "send_test_message", "_selected_action": [channel], "recipient": recipient, "text": "ping"},
            )

    def messages_of(self, response) -> list[str]:
        return [str(m) for m in response.wsgi_request._messages]

    def test_a_test_message_goes_out_through_the_provider_to_the_e164_number(self) -> None:
        response = self.send_test("+1 (555) 000-7777")

        self.assertEqual(response.status_code, 302)
        delivery = Delivery.objects.get(channel_id="tb")
        self.assertEqual((delivery.recipient, delivery.status, delivery.provider_message_id), ("+15550007777", "sent", "tbm-1"))
        [request] = self.vendor.requests
        self.assertEqual(request.json(), {"account": "AC-1", "to": "+15550007777", "text": "ping"})

    def test_a_recipient_that_is_not_a_phone_number_is_refused_clearly_and_nothing_is_sent(self) -> None:
        for recipient, words in (("12345", "short code or sender id"), ("call me maybe", "is not a phone number")):
            with self.subTest(recipient):
                rooms = Room.objects.count()
                response = self.send_test(recipient)
                [message] = self.messages_of(response)
                self.assertIn(words, message)
                self.assertIn("E.164", message)
                self.assertEqual(Room.objects.count(), rooms)
        self.assertFalse(Delivery.objects.exists())
        self.assertEqual(self.vendor.requests, [])

    def test_a_channel_missing_what_its_provider_needs_says_so(self) -> None:
        Channel.objects.filter(pk="tb").update(config={"from": "+15550001000", "api_base": self.vendor.url})

        response = self.send_test("+15550007777")

        [message] = self.messages_of(response)
        self.assertIn("tb: not ready to send: config.account_id: Account ID is required", message)
        self.assertFalse(Delivery.objects.exists())


class VoiceSettingsTests(ChannelAdminTestCase):
    """A browser voice channel's settings are checked when saved: what would not work is refused, with why."""

    def save(self, settings: str):
        form = channel_form("voice", "browser", **{"cfg__browser__voice": settings})
        return self.post("/admin/rooms/channel/add/?channel_type=voice", {**form, "id": "line", "name": "Line"})

    def test_settings_that_would_not_work_are_refused_and_nothing_is_saved(self) -> None:
        for settings, message in (
            ('{"detector": "silerro"}', "detector must be one of webrtc, silero, energy"),
            ('{"probable_end_ms": 10}', "probable_end_ms must be a whole number of ms from 60 to 5000"),
            ('{"interruption": "sometimes"}', "interruption must be one of immediate, confirmed, semantic, disabled"),
            ('{"stt": {"provider": "whisperr"}}', "stt provider must be one of whisper, pocketsphinx, openai, deepgram"),
            ('{"native": ["echo"]}', "native must be a list of aec, agc, denoise"),
            ('{"record": "yes"}', "record must be true or false"),
            ('{"colour": "blue"}', "unknown setting &#x27;colour&#x27;"),
            ('{"detector": ', "not JSON"),
        ):
            with self.subTest(settings=settings):
                response = self.save(settings)
                self.assertEqual(response.status_code, 200)
                self.assertIn(message, self.bodies[-1])
                self.assertFalse(Channel.objects.filter(pk="line").exists())

    def test_diarization_is_refused_where_its_encoder_is_not_installed(self) -> None:
        from unittest import mock

        with mock.patch("voice.audio.diarization.diarization_available", return_value=False):
            response = self.save('{"diarization": true}')
        self.assertEqual(response.status_code, 200)
        self.assertIn("diarization needs Resemblyzer and PyTorch, not installed here: run `make diarization`", self.bodies[-1])
        self.assertFalse(Channel.objects.filter(pk="line").exists())

    def test_working_settings_are_saved(self) -> None:
        response = self.save('{"detector": "silero", "probable_end_ms": 200, "tts": {"provider": "espeak"}, "record": true}')
        self.assertEqual(response.status_code, 302, self.bodies[-1][:3000])
        from voice.config import voice_settings

        settings = voice_settings(Channel.objects.get(pk="line").config)
        self.assertEqual(
            (settings.detector, settings.probable_end_ms, settings.tts, settings.record),
            ("silero", 200, {"provider": "espeak"}, True),
        )
