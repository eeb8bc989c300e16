"""Transcoding: content fitted to what a target channel can carry, and the text rendering of every kind."""

from __future__ import annotations

from django.test import SimpleTestCase, TestCase

from rooms import services
from rooms.content.kinds import content_text
from rooms.enums import DEFAULT_CAPABILITIES, ChannelType
from rooms.hooks import HookTrigger
from rooms.inbound.sms_encoding import GSM7, UCS2, sms_size
from rooms.inbound.transcoding import transcode, transcode_for
from rooms.models import Delivery, Observation, RoomEvent
from tests.rooms.fixtures import send, use_hook
from tests.support import make_channel

SMS = DEFAULT_CAPABILITIES[ChannelType.SMS]
EMAIL = DEFAULT_CAPABILITIES[ChannelType.EMAIL]
TELEGRAM = DEFAULT_CAPABILITIES[ChannelType.TELEGRAM]
VOICE = DEFAULT_CAPABILITIES[ChannelType.VOICE]
CONSOLE = DEFAULT_CAPABILITIES[ChannelType.CONSOLE]
TEXT_ONLY = {"media_types": ["text"], "max_length": None}


def text(body: str) -> dict:
    return {"type": "text", "body": body}


class RichToTextTests(SimpleTestCase):
    def test_html_is_stripped_to_its_text_with_line_breaks(self) -> None:
        rich = {
            "type": "rich",
            "format": "html",
            "body": "<div><p>Hello <b>Ann</b>,</p><p>your   order&nbsp;is <i>ready</i> &amp; paid.<br/>Thanks</p></div>",
        }
        self.assertEqual(transcode(rich, SMS), text("Hello Ann,\nyour order is ready & paid.\nThanks"))

    def test_script_and_style_contents_never_reach_a_text_channel(self) -> None:
        rich = {
            "type": "rich",
            "format": "html",
            "body": "<style>p{color:red}</style><p>Hi</p><script>alert('x')</script><p>there</p>",
        }
        self.assertEqual(transcode(rich, SMS), text("Hi\nthere"))

    def test_list_items_become_lines(self) -> None:
        rich = {"type": "rich", "format": "html", "body": "<ul><li>one</li><li>two</li></ul>"}
        self.assertEqual(transcode(rich, TEXT_ONLY)["body"], "one\ntwo")

    def test_markdown_is_sent_as_written(self) -> None:
        rich = {"type": "rich", "body": "**Order** shipped"}
        self.assertEqual(transcode(rich, SMS), text("**Order** shipped"))

    def test_plain_text_alternative_wins(self) -> None:
        rich = {"type": "rich", "format": "html", "body": "<table><tr><td>x</td></tr></table>", "plain_text": "Your table"}
        self.assertEqual(transcode(rich, SMS), text("Your table"))

    def test_buttons_and_quick_replies_are_listed(self) -> None:
        rich = {
            "type": "rich",
            "body": "Pick one",
            "buttons": [{"title": "Yes"}, {"text": "No"}, {"url": "https://x"}],
            "quick_replies": ["Later"],
        }
        self.assertEqual(transcode(rich, SMS), text("Pick one\nYes | No | Later"))

    def test_rich_is_kept_where_rich_is_carried(self) -> None:
        rich = {"type": "rich", "format": "html", "body": "<b>hi</b>"}
        self.assertIs(transcode(rich, EMAIL), rich)

    def test_rich_longer_than_the_channel_takes_is_cut_as_text(self) -> None:
        # Telegram takes rich text up to 4096 characters: a longer body would be
        # refused by the vendor, and markup cannot be cut safely.
        rich = {"type": "rich", "format": "html", "body": "<p>" + "a" * 5000 + "</p>"}
        out = transcode(rich, TELEGRAM)
        self.assertEqual(out["type"], "text")
        self.assertEqual(len(out["body"]), 4096)
        self.assertTrue(out["body"].endswith("…"))
        self.assertNotIn("<p>", out["body"])


class MediaAndLocationTests(SimpleTestCase):
    def test_media_becomes_a_media_line_with_its_caption(self) -> None:
        media = {"type": "media", "url": "https://cdn/x/invoice.pdf", "mime_type": "application/pdf", "filename": "invoice.pdf"}
        self.assertEqual(transcode(media, TEXT_ONLY), text("[Media: invoice.pdf]"))
        self.assertEqual(transcode({**media, "caption": "March"}, TEXT_ONLY), text("[Media: invoice.pdf] March"))

    def test_media_without_filename_names_its_url(self) -> None:
        media = {"type": "media", "url": "https://cdn/x/1.jpg", "mime_type": "image/jpeg"}
        self.assertEqual(transcode(media, TEXT_ONLY), text("[Media: https://cdn/x/1.jpg]"))

    def test_media_is_kept_on_sms_with_its_caption_cut(self) -> None:
        media = {"type": "media", "url": "https://cdn/x/1.jpg", "mime_type": "image/jpeg", "caption": "c" * 2000}
        out = transcode(media, SMS)
        self.assertEqual((out["type"], out["url"]), ("media", "https://cdn/x/1.jpg"))
        self.assertEqual(len(out["caption"]), 1600)
        self.assertEqual(media["caption"], "c" * 2000, "the input is not changed")

    def test_location_with_and_without_a_label(self) -> None:
        where = {"type": "location", "latitude": 51.5, "longitude": -0.1276}
        self.assertEqual(transcode(where, SMS), text("[Location: 51.500000, -0.127600]"))
        self.assertEqual(
            transcode({**where, "label": "Office"}, SMS),
            text("[Location: Office (51.500000, -0.127600)]"),
        )
        self.assertEqual(
            transcode({**where, "address": "1 Main St"}, SMS),
            text("[Location: 1 Main St (51.500000, -0.127600)]"),
        )

    def test_audio_video_and_template(self) -> None:
        audio = {"type": "audio", "url": "https://cdn/a.wav"}
        self.assertEqual(transcode(audio, SMS), text("[Audio: https://cdn/a.wav]"))
        self.assertEqual(transcode({**audio, "transcript": "hello there"}, SMS), text("hello there"))
        self.assertIs(transcode(audio, VOICE), audio)
        video = {"type": "video", "url": "https://cdn/v.mp4", "caption": "demo"}
        self.assertEqual(transcode(video, SMS), text("[Video: https://cdn/v.mp4] demo"))
        self.assertEqual(transcode({"type": "template", "name": "order_update"}, SMS), text("[Template: order_update]"))
        self.assertEqual(transcode({"type": "template", "name": "t", "body": "Your code is 1"}, SMS), text("Your code is 1"))


class CompositeAndBookkeepingTests(SimpleTestCase):
    def test_composite_is_the_text_of_its_parts_line_by_line(self) -> None:
        composite = {
            "type": "composite",
            "parts": [
                text("See attached"),
                {"type": "media", "url": "https://cdn/a.png", "mime_type": "image/png", "filename": "a.png"},
                {"type": "location", "latitude": 1, "longitude": 2, "label": "here"},
            ],
        }
        self.assertEqual(
            transcode(composite, SMS),
            text("See attached\n[Media: a.png]\n[Location: here (1.000000, 2.000000)]"),
        )

    def test_composite_is_cut_as_a_whole(self) -> None:
        composite = {"type": "composite", "parts": [text("a" * 1000), text("b" * 1000)]}
        out = transcode(composite, SMS)["body"]
        self.assertEqual(len(out), 1600)
        self.assertTrue(out.startswith("a" * 1000 + "\n" + "b"))
        self.assertTrue(out.endswith("..."))

    def test_system_edit_and_delete_render_as_text_where_not_carried(self) -> None:
        self.assertEqual(transcode({"type": "system", "body": "Room closed"}, CONSOLE), text("Room closed"))
        edit = {"type": "edit", "target_event_id": "e1", "new_content": text("fixed")}
        self.assertEqual(transcode(edit, SMS), text("[Edited] fixed"))
        self.assertIs(transcode(edit, CONSOLE), edit)
        self.assertEqual(transcode({"type": "delete", "target_event_id": "e1"}, SMS), text("[Message deleted]"))

    def test_content_text_of_unknown_kind_is_empty(self) -> None:
        self.assertEqual(content_text({"type": "hologram"}), "")


class PlatformLimitTests(SimpleTestCase):
    """Limits a platform names in the channel's capabilities, applied for every adapter."""

    def test_more_choices_than_the_platform_shows_go_as_text_listing_them_all(self) -> None:
        caps = {"media_types": ["text", "rich"], "max_length": 4096, "max_options": 3}
        fits = {"type": "rich", "body": "Pick one", "buttons": [{"title": "A"}, {"title": "B"}], "quick_replies": ["C"]}
        self.assertEqual(transcode(fits, caps), fits)
        too_many = {"type": "rich", "body": "Pick one", "buttons": [{"title": t} for t in "ABCD"]}
        self.assertEqual(transcode(too_many, caps), {"type": "text", "body": "Pick one\nA | B | C | D"})

    def test_a_caption_has_its_own_limit(self) -> None:
        caps = {"media_types": ["text", "media"], "max_length": 4096, "max_caption_length": 10}
        media = {"type": "media", "url": "https://x.example/a.png", "mime_type": "image/png", "caption": "a" * 30}
        self.assertEqual(transcode(media, caps)["caption"], "a" * 9 + "…")

    def test_a_file_larger_than_the_platform_takes_goes_as_a_link(self) -> None:
        caps = {"media_types": ["text", "media"], "max_length": 4096, "max_media_bytes": 1000}
        small = {"type": "media", "url": "https://x.example/a.pdf", "mime_type": "application/pdf", "size": 999}
        self.assertEqual(transcode(small, caps), small)
        large = {**small, "size": 5000, "caption": "The contract"}
        self.assertEqual(transcode(large, caps), {"type": "text", "body": "The contract\nhttps://x.example/a.pdf"})


class LengthTests(SimpleTestCase):
    def test_sms_text_is_cut_at_1600_with_three_ascii_dots(self) -> None:
        self.assertEqual(transcode(text("x" * 1600), SMS), text("x" * 1600))
        out = transcode(text("x" * 1601), SMS)["body"]
        self.assertEqual(out, "x" * 1597 + "...")
        self.assertEqual(len(out), 1600)

    def test_max_length_from_capabilities(self) -> None:
        caps = {"media_types": ["text"], "max_length": 5}
        self.assertEqual(transcode(text("hello"), caps), text("hello"))
        self.assertEqual(transcode(text("hello!"), caps), text("hell…"))

    def test_no_max_length_means_no_cut(self) -> None:
        body = "y" * 100_000
        self.assertEqual(transcode(text(body), EMAIL), text(body))

    def test_capabilities_without_media_types_take_text(self) -> None:
        self.assertEqual(transcode({"type": "rich", "body": "*b*"}, {}), text("*b*"))

    def test_input_content_is_never_changed(self) -> None:
        original = text("z" * 3000)
        transcode(original, SMS)
        self.assertEqual(len(original["body"]), 3000)


class ThroughTheInboundPathTests(TestCase):
    """The delivery rows carry the transcoded content; per-channel capabilities override the type's."""

    def test_each_target_gets_content_for_its_capabilities(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        make_channel("sms", channel_type=ChannelType.SMS, provider="")
        make_channel("short-sms", channel_type=ChannelType.SMS, provider="", capabilities={"max_length": 160})
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        room = services.room_create()
        for channel_id, address in (("sms", "+15550120"), ("short-sms", "+15550121"), ("mail", "mail@example.com")):
            services.channel_attach(room_id=room.id, channel_id=channel_id, address=address)
        rich = {"type": "rich", "format": "html", "body": "<p>" + "w" * 2000 + "</p>"}

        result = send("api", "api:1", room_id=room.id, content=rich)

        got = dict(Delivery.objects.filter(event_id=result.event_id).values_list("channel_id", "content"))
        self.assertEqual(got["mail"], rich)
        self.assertEqual(got["sms"], text("w" * 1597 + "..."))
        self.assertEqual(got["short-sms"], text("w" * 157 + "..."))


class SmsSegmentTests(SimpleTestCase):
    def test_gsm7_and_ucs2_are_told_apart(self) -> None:
        self.assertEqual(sms_size("Hello @ home £5 ÄÖÜ").encoding, GSM7)
        self.assertEqual(sms_size("price 10€ {ok}").encoding, GSM7, "the extension table is GSM-7 too")
        for text_ in ("ça va", "wait…", "ok 😀", "Привет"):
            with self.subTest(text_):
                self.assertEqual(sms_size(text_).encoding, UCS2)

    def test_segment_counts_at_the_boundaries(self) -> None:
        cases = [
            ("", 0),
            ("a" * 160, 1),
            ("a" * 161, 2),
            ("a" * 306, 2),
            ("a" * 307, 3),
            ("€" * 80, 1),  # 160 septets: two each
            ("€" * 81, 2),
            ("é" * 70 + "ç", 2),  # one UCS-2 character makes 71 units
            ("ç" * 70, 1),
            ("ç" * 134, 2),
            ("ç" * 135, 3),
            ("😀" * 35, 1),  # 70 UTF-16 units
            ("😀" * 36, 2),
        ]
        for text_, segments in cases:
            with self.subTest(text_[:10], length=len(text_)):
                self.assertEqual(sms_size(text_).segments, segments)

    def test_a_two_septet_character_never_straddles_two_segments(self) -> None:
        # 152 septets then "€" (2): the second segment starts with it, and the
        # text fills 153 + 153 + 1, so three segments rather than two.
        self.assertEqual(sms_size("a" * 152 + "€" + "a" * 152).segments, 3)
        self.assertEqual(sms_size("a" * 151 + "€" + "a" * 153).segments, 2)

    def test_cutting_a_gsm7_text_keeps_it_gsm7(self) -> None:
        out = transcode(text("a" * 2000), SMS)["body"]
        self.assertTrue(out.endswith("..."))
        size = sms_size(out)
        self.assertEqual((size.encoding, size.segments), (GSM7, 11))  # 1600 septets / 153


class EmptyRenderingTests(SimpleTestCase):
    def test_what_renders_to_nothing_is_refused(self) -> None:
        for label, content in {
            "rich that is only markup": {"type": "rich", "format": "html", "body": "<div><p> </p><br/></div>"},
            "composite of empty parts": {
                "type": "composite",
                "parts": [
                    {"type": "rich", "format": "html", "body": "<p></p>"},
                    {"type": "rich", "format": "html", "body": "<span/>"},
                ],
            },
            "media of an unknown type": {"type": "media", "url": "https://cdn/x", "mime_type": "x-blob/whatever"},
        }.items():
            with self.subTest(label):
                fitted = transcode_for(content, TEXT_ONLY)
                self.assertIsNone(fitted.content)
                self.assertTrue(fitted.failure.startswith("transcoding_failed"))

    def test_what_has_something_to_say_passes(self) -> None:
        self.assertEqual(transcode_for({"type": "rich", "format": "html", "body": "<p>hi</p>"}, TEXT_ONLY).content, text("hi"))
        # A caption, a file name or a known type still tell the reader something.
        unknown = {"type": "media", "url": "https://cdn/x", "mime_type": "x-blob/whatever"}
        self.assertEqual(transcode_for({**unknown, "caption": "see"}, TEXT_ONLY).content, text("see"))
        self.assertEqual(transcode_for({**unknown, "filename": "a.bin"}, TEXT_ONLY).content, text("[Media: a.bin]"))
        # Where the type is carried, it is sent as it is.
        self.assertEqual(transcode_for(unknown, SMS).content, unknown)


class EmptyRenderingThroughTheInboundPathTests(TestCase):
    def setUp(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        make_channel("sms", channel_type=ChannelType.SMS, provider="")
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        self.room = services.room_create()
        services.channel_attach(room_id=self.room.id, channel_id="sms", address="+15550001")
        services.channel_attach(room_id=self.room.id, channel_id="mail", address="ann@example.com")

    def test_the_event_is_stored_and_the_empty_delivery_is_failed_with_an_observation(self) -> None:
        heard: list[tuple[int, str]] = []
        use_hook(self, HookTrigger.ON_DELIVERY_STATUS, lambda d, ctx: heard.append((d.id, d.status)))
        markup_only = {"type": "rich", "format": "html", "body": "<table><tr><td></td></tr></table>", "buttons": []}
        with self.captureOnCommitCallbacks(execute=True):
            result = send("api", "api:1", room_id=self.room.id, content=markup_only)

        self.assertEqual(result.status, "stored")
        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).content["type"], "rich")
        deliveries = {d.channel_id: d for d in Delivery.objects.filter(event_id=result.event_id)}
        sms = deliveries["sms"]
        self.assertEqual(sms.status, "failed")
        self.assertTrue(sms.last_error.startswith("transcoding_failed"))
        self.assertEqual(sms.attempts, 0, "never attempted")
        # E-mail carries rich content, but markup alone is an empty e-mail.
        self.assertEqual(deliveries["mail"].status, "failed")
        obs = Observation.objects.get(kind="transcoding_failed", data__channel_id="sms")
        self.assertEqual((obs.event_id, obs.data["delivery_id"]), (result.event_id, sms.id))
        self.assertEqual(sorted(heard), sorted([(sms.id, "failed"), (deliveries["mail"].id, "failed")]))

    def test_a_target_that_has_something_to_say_still_gets_it(self) -> None:
        caption_only = {"type": "media", "url": "https://cdn/x", "mime_type": "x-blob/whatever"}
        result = send("api", "api:1", room_id=self.room.id, content=caption_only)
        deliveries = {d.channel_id: d for d in Delivery.objects.filter(event_id=result.event_id)}
        # SMS (MMS) and e-mail carry media as it is; nothing failed.
        self.assertEqual({c: d.status for c, d in deliveries.items()}, {"sms": "pending", "mail": "pending"})
        self.assertFalse(Observation.objects.filter(kind="transcoding_failed").exists())

    def test_sms_deliveries_record_their_segments(self) -> None:
        gsm = send("api", "api:1", room_id=self.room.id, text="a" * 200).event_id
        ucs = send("api", "api:1", room_id=self.room.id, text="ç" * 100).event_id
        self.assertEqual(Delivery.objects.get(event_id=gsm, channel_id="sms").segments, 2)
        self.assertEqual(Delivery.objects.get(event_id=ucs, channel_id="sms").segments, 2)
        self.assertIsNone(Delivery.objects.get(event_id=gsm, channel_id="mail").segments)
