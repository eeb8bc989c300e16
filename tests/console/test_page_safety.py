"""Admin pages under a Content-Security-Policy with no inline code, and media links that cannot lead elsewhere."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.test import TestCase

from rooms.models import RoomEvent
from tests.console.helpers import chat_room, logged_in, make_user, say, sms_and_web_channels

UNSAFE_URLS = [
    "/\\evil.example/x.png",
    "//evil.example/x.png",
    "/\t/evil.example/x.png",
    "/\\/evil.example/x.png",
    " //evil.example/x.png",
    "javascript:alert(1)",
    "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
    "https:\\\\evil.example/x.png",
    "https:evil.example/x.png",
]


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


class AdminPolicyTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Support")
        say(self.room.pk, "hello")
        self.client = logged_in(make_user("root", superuser=True))

    def pages(self) -> list[str]:
        page = f"/admin/rooms/room/{self.room.pk}/console/"
        return [
            "/admin/",
            "/admin/rooms/room/",
            page,
            page + "timeline/?after_seq=0",
            "/admin/rooms/channel/sms/change/",
            "/admin/rooms/roomevent/",
            "/admin/rooms/channelbinding/",
        ]

    def test_every_admin_page_has_a_policy_without_inline_code(self) -> None:
        login = self.client_class().get("/admin/login/")
        self.assertIn("script-src 'self'", login["Content-Security-Policy"])
        for path in self.pages():
            with self.subTest(path=path):
                response = self.client.get(path)
                self.assertEqual(response.status_code, 200)
                policy = directives(response["Content-Security-Policy"])
                self.assertEqual(policy["script-src"], ["'self'"])
                self.assertEqual(policy["style-src"], ["'self'"])
                self.assertEqual(policy["object-src"], ["'none'"])
                self.assertEqual(policy["frame-ancestors"], ["'none'"])
                # The live console's staff socket is on this host.
                self.assertIn("ws://testserver", policy["connect-src"])
                html = response.content.decode()
                # What the policy would block: inline scripts, style elements and attributes, handlers.
                for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
                    self.assertTrue("src=" in attrs or 'type="application/json"' in attrs or not body.strip(), attrs)
                self.assertNotIn("<style", html)
                self.assertIsNone(re.search(r"\sstyle=", html), re.search(r".{60}\sstyle=.{60}", html))
                self.assertIsNone(re.search(r"\son[a-z]+=", html))
                for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
                    self.assertIsNotNone(finders.find(src.removeprefix("/static/")), src)

    def test_the_chat_page_keeps_its_own_policy(self) -> None:
        policy = directives(self.client.get("/")["Content-Security-Policy"])
        self.assertEqual(policy["script-src"], ["'self'"])
        self.assertIn("ws://testserver", policy["connect-src"])
        self.assertEqual(policy["img-src"], ["'self'", "blob:", "data:", "https:", "http:"])


class MediaLinkTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Support")
        self.client = logged_in(make_user("root", superuser=True))

    def page(self) -> str:
        return self.client.get(f"/admin/rooms/room/{self.room.pk}/console/").content.decode()

    def test_urls_a_browser_would_send_to_another_host_are_never_links_or_sources(self) -> None:
        for i, url in enumerate(UNSAFE_URLS):
            for mime in ("image/png", "audio/ogg", "video/mp4", "application/pdf"):
                say(self.room.pk, "", content={"type": "media", "url": url, "mime_type": mime, "filename": f"f{i}"})
        say(self.room.pk, "", content={"type": "audio", "url": "//evil.example/a.ogg", "mime_type": "audio/ogg"})
        say(self.room.pk, "", content={"type": "video", "url": "/\\evil.example/v.mp4", "mime_type": "video/mp4"})
        links = "".join(f'<a href="{u}">link {i}</a>' for i, u in enumerate(UNSAFE_URLS))
        say(self.room.pk, "", content={"type": "rich", "format": "html", "body": f"<p>{links}</p>"})
        stored = RoomEvent.objects.filter(room_id=self.room.pk, content__type__in=["media", "audio", "video", "rich"])
        self.assertEqual(stored.count(), len(UNSAFE_URLS) * 4 + 3)

        html = self.page()
        urls = re.findall(r'(?:href|src)="([^"]*)"', html)
        for url in urls:
            with self.subTest(url=url):
                self.assertTrue(
                    url.startswith(("https://", "http://", "#")) or (url.startswith("/") and not url.startswith(("//", "/\\"))),
                    url,
                )
                self.assertNotIn("evil", url)
        self.assertEqual(html.count("link not shown"), len(UNSAFE_URLS) * 4 + 2)
        self.assertIn(">link 0</a>", html)  # the rich text stays, without its link

    def test_http_urls_and_this_sites_paths_are_shown(self) -> None:
        say(self.room.pk, "", content={"type": "media", "url": "https://cdn.example/p.png", "mime_type": "image/png"})
        say(self.room.pk, "", content={"type": "media", "url": "/media/chat/2026/11/a.png", "mime_type": "image/png"})
        say(self.room.pk, "", content={"type": "rich", "format": "html", "body": '<a href="https://docs.example/x">docs</a>'})
        html = self.page()
        self.assertIn('src="https://cdn.example/p.png"', html)
        self.assertIn('src="/media/chat/2026/11/a.png"', html)
        self.assertIn('href="https://docs.example/x"', html)
