"""The API's edges through HTTP: values the databases cannot hold, Django's own refusals as JSON,
the index and the documentation, and a schema that says what the API refuses."""

from __future__ import annotations

import json
import re

from django.contrib.staticfiles import finders
from django.test import TestCase, override_settings

from rooms.services import room_create
from tests.api.test_api import new_token
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel, post_signed

INT64_MAX = 2**63 - 1


class ValuesBeyondTheDatabaseTests(TestCase):
    def setUp(self) -> None:
        self.auth = {"Authorization": f"Bearer {new_token()}"}
        self.room = room_create(name="r")

    def test_integers_past_64_bits_are_400_not_500(self) -> None:
        for path in (
            f"/api/v1/rooms?offset={INT64_MAX + 1}",
            "/api/v1/rooms?offset=99999999999999999999999999",
            "/api/v1/rooms?limit=9223372036854775808",
            f"/api/v1/rooms/{self.room.id}/events?after_seq={INT64_MAX + 1}",
        ):
            with self.subTest(path=path):
                error_of(self, self.client.get(path, headers=self.auth), 400, "invalid_input")

    def test_the_largest_integers_the_database_holds_are_answered(self) -> None:
        r = self.client.get(f"/api/v1/rooms?offset={INT64_MAX}&limit=500", headers=self.auth)
        self.assertEqual((r.status_code, r.json()["rooms"], r.json()["count"]), (200, [], 1))
        r = self.client.get(f"/api/v1/rooms/{self.room.id}/events?after_seq={INT64_MAX}", headers=self.auth)
        self.assertEqual((r.status_code, r.json()["events"]), (200, []))

    def test_room_ids_the_database_cannot_hold_are_400(self) -> None:
        for room_id, code in (("a%00b", "invalid_text"), ("x" * 65, "invalid_input")):
            for suffix in ("", "/events"):
                with self.subTest(room_id=room_id[:10], suffix=suffix):
                    r = self.client.get(f"/api/v1/rooms/{room_id}{suffix}", headers=self.auth)
                    error_of(self, r, 400, code)
        before = row_counts()
        r = self.client.post(
            "/api/v1/rooms/a%00b/messages", data=json.dumps({"text": "hi"}), content_type="application/json", headers=self.auth
        )
        error_of(self, r, 400, "invalid_text")
        self.assertEqual(row_counts(), before)

    def test_text_the_database_cannot_store_is_refused_where_it_would_be_stored(self) -> None:
        path = f"/api/v1/rooms/{self.room.id}/messages"
        before = row_counts()
        for body in ('{"text": "a\\u0000b"}', '{"text": "a\\ud800b"}', '{"text": "ok", "sender": "\\udfff"}'):
            with self.subTest(body=body):
                r = self.client.post(path, data=body, content_type="application/json", headers=self.auth)
                error_of(self, r, 400, "invalid_text")
        self.assertEqual(row_counts(), before)
        # A field the API does not read is ignored, whatever it holds (as its schema allows any).
        body = '{"text": "fine \\ud83d\\ude00", "extra": ["\\u0000", "\\ud800"]}'
        r = self.client.post(path, data=body, content_type="application/json", headers=self.auth)
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(self.client.get(path.replace("messages", "events"), headers=self.auth).json()["events"][0]["content"],
                         {"type": "text", "body": "fine \U0001f600"})  # fmt: skip


class DjangoRefusalsAreJSONTests(TestCase):
    """Refusals Django makes before or around our views keep the contract's shape on machine paths."""

    def test_body_over_djangos_own_limit_is_413_json_on_api_and_webhooks(self) -> None:
        room = room_create(name="r")
        make_channel("crm-limit", secrets={"signing_secret": "s"})
        before = row_counts()
        # The body passes the Content-Length check but not Django's own limit (a chunked body's case).
        with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
            r = self.client.post(
                f"/api/v1/rooms/{room.id}/messages",
                data=json.dumps({"text": "x" * 200}),
                content_type="application/json",
                headers={"Authorization": f"Bearer {new_token()}"},
            )
            error_of(self, r, 413, "body_too_large")
            r = post_signed(self.client, "/webhooks/crm-limit/", {"id": "1", "sender": "a", "text": "x" * 200}, "s")
            error_of(self, r, 413, "body_too_large")
        self.assertEqual(row_counts(), before)

    def test_pages_for_people_keep_their_html(self) -> None:
        with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10):
            r = self.client.post("/admin/login/", {"username": "x" * 50, "password": "y"})
        self.assertEqual(r.status_code, 400)
        self.assertTrue(r["Content-Type"].startswith("text/html"))


class IndexAndDocsTests(TestCase):
    def test_index_lists_every_operation_of_the_schema(self) -> None:
        r = self.client.get("/api/v1/")
        self.assertEqual(r.status_code, 200)
        index = r.json()
        self.assertEqual((index["openapi"], index["docs"]), ("/api/v1/openapi.json", "/api/v1/docs"))
        schema = self.client.get(index["openapi"]).json()
        listed = {(e["method"], e["path"]) for e in index["endpoints"]}
        documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
        self.assertEqual(listed, documented)
        self.assertIn(("POST", "/api/v1/rooms/{room_id}/messages"), listed)
        by_path = {(e["method"], e["path"]): e for e in index["endpoints"]}
        self.assertEqual(by_path[("GET", "/api/v1/rooms")]["auth"], "BearerToken")
        self.assertIsNone(by_path[("POST", "/api/v1/chat/sessions")]["auth"])
        self.assertTrue(all(e["summary"] for e in index["endpoints"]))

    def test_docs_page_is_served_from_this_site_under_a_csp(self) -> None:
        r = self.client.get("/api/v1/docs")
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r["Content-Type"].startswith("text/html"))
        policy = r["Content-Security-Policy"]
        self.assertIn("script-src 'self'", policy)
        self.assertNotIn("unsafe-inline", policy.split("style-src")[0])
        html = r.content.decode()
        # Every script and stylesheet is this site's own static file (no CDN: users may be offline).
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        self.assertTrue(sources)
        for source in sources:
            with self.subTest(source=source):
                self.assertTrue(source.startswith("/static/"), source)
                self.assertIsNotNone(finders.find(source.removeprefix("/static/")), source)
        # No inline script: the settings travel as JSON data, which the CSP lets through.
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
            if body.strip():
                self.assertIn('type="application/json"', attrs)
        settings_json = json.loads(re.search(r'id="swagger-settings">(.*?)</script>', html, re.S).group(1))
        self.assertEqual(settings_json["url"], "/api/v1/openapi.json")


class SchemaSaysWhatTheAPIRefusesTests(TestCase):
    def setUp(self) -> None:
        self.schema = self.client.get("/api/v1/openapi.json").json()

    def operations(self):
        for path, operations in self.schema["paths"].items():
            for method, operation in operations.items():
                yield path, method, operation

    def test_every_operation_documents_its_4xx_answers(self) -> None:
        for path, method, operation in self.operations():
            with self.subTest(path=path, method=method):
                for status in ("400", "413", "415"):
                    self.assertIn(status, operation["responses"])
                if operation.get("security"):
                    self.assertIn("401", operation["responses"])
                for status, response in operation["responses"].items():
                    if status.startswith("4"):
                        ref = response["content"]["application/json"]["schema"]["$ref"]
                        self.assertEqual(ref, "#/components/schemas/ErrorOut")

    def test_bodies_are_objects_never_null(self) -> None:
        for path, _method, operation in self.operations():
            body = operation.get("requestBody")
            if not body or "application/json" not in body["content"]:
                continue
            with self.subTest(path=path):
                schema = body["content"]["application/json"]["schema"]
                self.assertNotIn("null", json.dumps(schema))

    def test_text_fields_refuse_nul_and_ids_are_bounded(self) -> None:
        schemas = self.schema["components"]["schemas"]
        message = schemas["MessageIn"]
        self.assertEqual(message["required"], ["text"])
        self.assertEqual(message["properties"]["text"]["pattern"], "^[^\\u0000]*$")
        for name in ("idempotency_key", "sender"):
            [string] = [s for s in message["properties"][name]["anyOf"] if s["type"] == "string"]
            self.assertEqual(string["pattern"], "^[^\\u0000]*$")
        [string] = [s for s in schemas["ChatSessionIn"]["properties"]["display_name"]["anyOf"] if s["type"] == "string"]
        self.assertEqual(string["pattern"], "^[^\\u0000]*$")
        for path, _method, operation in self.operations():
            for param in operation.get("parameters", []):
                with self.subTest(path=path, param=param["name"]):
                    schema = param["schema"]
                    if param["in"] == "path":
                        self.assertEqual((schema["maxLength"], schema["pattern"]), (64, "^[^\\u0000]*$"))
                    if schema.get("type") == "integer":
                        self.assertLessEqual(schema["maximum"], INT64_MAX)
        # A NUL in a field is refused as the schema says, on every database.
        r = self.client.post(
            f"/api/v1/rooms/{room_create().id}/messages",
            data='{"text": "a\\u0000b"}',
            content_type="application/json",
            headers={"Authorization": f"Bearer {new_token()}"},
        )
        error_of(self, r, 400, "invalid_text")
