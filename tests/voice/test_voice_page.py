"""The browser voice page (``GET /voice/``): which channel it serves, its policy headers, its static files."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.test import TestCase, override_settings

from tests.support import make_channel

WORKLETS = ("voice/capture-worklet.js", "voice/playback-worklet.js")


def directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


class VoicePageTests(TestCase):
    def setUp(self) -> None:
        make_channel("voice", channel_type="voice", provider="browser", name="Browser voice")

    def test_the_default_voice_channel_is_served(self) -> None:
        r = self.client.get("/voice/")
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r["Content-Type"].startswith("text/html"))
        html = r.content.decode()
        self.assertIn('data-channel-id="voice"', html)
        self.assertIn('data-socket-path="/ws/voice/"', html)
        self.assertIn('data-sessions-url="/api/v1/chat/sessions"', html)
        self.assertIn("<h1>Browser voice</h1>", html)
        self.assertIn('id="call"', html)

    def test_the_policy_admits_only_this_site_and_its_sockets(self) -> None:
        r = self.client.get("/voice/", HTTP_HOST="voice.example.test")
        policy = directives(r["Content-Security-Policy"])
        self.assertEqual(policy["default-src"], ["'self'"])
        # The AudioWorklet modules are scripts to CSP: this site's own, nothing inline.
        self.assertEqual(policy["script-src"], ["'self'"])
        self.assertEqual(policy["style-src"], ["'self'"])
        self.assertEqual(policy["connect-src"], ["'self'", "ws://voice.example.test", "wss://voice.example.test"])
        self.assertEqual(policy["object-src"], ["'none'"])
        self.assertEqual(policy["frame-ancestors"], ["'none'"])
        self.assertNotIn("unsafe-inline", r["Content-Security-Policy"])
        self.assertNotIn("unsafe-eval", r["Content-Security-Policy"])
        self.assertEqual(r["Permissions-Policy"], "microphone=(self), camera=(), geolocation=()")
        self.assertEqual(r["Referrer-Policy"], "same-origin")

    def test_every_script_style_and_worklet_is_a_static_file_of_this_site(self) -> None:
        html = self.client.get("/voice/").content.decode()
        self.assertNotRegex(html, r"<script>|<style|\sstyle=|\son[a-z]+=")
        sources = re.findall(r'(?:src|href|data-capture-worklet|data-playback-worklet)="(/static/[^"]+)"', html)
        for wanted in ("webchat/chat.css", "voice/voice.css", "webchat/people.js", "voice/voice.js", *WORKLETS):
            self.assertIn(f"/static/{wanted}", sources)
        for source in sources:
            with self.subTest(source=source):
                self.assertIsNotNone(finders.find(source.removeprefix("/static/")), source)

    def test_the_worklets_imports_are_static_files_beside_them(self) -> None:
        for worklet in WORKLETS:
            path = finders.find(worklet)
            with open(path, encoding="utf-8") as f:
                imports = re.findall(r'^import .* from "\./([^"]+)";$', f.read(), flags=re.M)
            self.assertEqual(imports, ["pcm-resampler.js"], worklet)
            self.assertIsNotNone(finders.find(f"voice/{imports[0]}"))

    def test_another_voice_channel_by_query(self) -> None:
        make_channel("line-2", channel_type="voice", provider="browser", name="Second line")
        r = self.client.get("/voice/?channel=line-2")
        self.assertEqual(r.status_code, 200)
        self.assertIn('data-channel-id="line-2"', r.content.decode())
        self.assertIn("<h1>Second line</h1>", r.content.decode())

    def test_unknown_disabled_and_non_voice_channels_are_404(self) -> None:
        make_channel("off-line", channel_type="voice", provider="browser", enabled=False)
        make_channel("webchat-x", channel_type="websocket", provider="")
        make_channel("bot", channel_type="ai", provider="", category="intelligence")
        # A phone line is a voice channel too, but callers reach it by phone, not from this page.
        make_channel("phone", channel_type="voice", provider="twilio")
        for channel_id in ("nope", "off-line", "webchat-x", "bot", "phone", "x" * 300):
            with self.subTest(channel=channel_id):
                r = self.client.get("/voice/", {"channel": channel_id})
                self.assertEqual(r.status_code, 404)
                html = r.content.decode()
                self.assertIn("This voice line isn't available", html)
                # No call can be started from it: no script, no channel id.
                self.assertNotIn("voice.js", html)
                self.assertNotIn("data-channel-id", html)
                self.assertIn("script-src 'self'", r["Content-Security-Policy"])

    def test_a_hostile_channel_id_is_not_echoed(self) -> None:
        r = self.client.get("/voice/", {"channel": '"><script>alert(1)</script>'})
        self.assertEqual(r.status_code, 404)
        self.assertNotIn("<script>alert", r.content.decode())
        self.assertNotIn("alert(1)", r.content.decode())

    @override_settings(ROOMKIT_VOICE_CHANNEL_ID="elsewhere")
    def test_the_default_channel_follows_the_setting(self) -> None:
        self.assertEqual(self.client.get("/voice/").status_code, 404)
        make_channel("elsewhere", channel_type="voice", provider="browser")
        r = self.client.get("/voice/")
        self.assertEqual(r.status_code, 200)
        self.assertIn('data-channel-id="elsewhere"', r.content.decode())

    def test_only_get(self) -> None:
        self.assertEqual(self.client.post("/voice/").status_code, 405)
        self.assertEqual(self.client.head("/voice/").status_code, 200)

    def test_the_session_the_page_asks_for_is_granted(self) -> None:
        r = self.client.post(
            "/api/v1/chat/sessions", {"channel_id": "voice", "display_name": "Ann"}, content_type="application/json"
        )
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(set(r.json()), {"room_id", "participant_id", "token", "welcome_message", "reply_time", "demo_agent"})
