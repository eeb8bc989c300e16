"""The channel's admin page lists the WhatsApp account's templates, read from the fake Graph API.

``GET /{version}/{waba_id}/message_templates`` with the access token; a
channel without ``waba_id``, or a token Meta refuses, gets a page that says why.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.channels_app.test_whatsapp_support import WhatsAppTestCase


class TemplatesPageTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "pw-not-used"))

    def test_the_channel_page_links_to_the_templates_which_are_read_from_meta(self) -> None:
        self.channel.config["waba_id"] = self.graph.waba_id
        self.channel.save(update_fields=["config"])
        change = self.client.get(reverse("admin:rooms_channel_change", args=["wa"]))
        url = reverse("admin:rooms_channel_provider_table", args=["wa"])
        self.assertContains(change, f'href="{url}"')

        page = self.client.get(url)

        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "order_confirmation")
        self.assertContains(page, "APPROVED")
        self.assertContains(page, "seasonal_promotion")
        self.assertContains(page, "Thank you for your order, {{1}}!")
        [request] = self.graph.requests_to(f"/v21.0/{self.graph.waba_id}/message_templates")
        self.assertEqual(request.headers["authorization"], f"Bearer {self.graph.access_token}")
        self.assertNotContains(page, self.graph.access_token)

    def test_without_waba_id_the_page_says_what_to_set(self) -> None:
        page = self.client.get(reverse("admin:rooms_channel_provider_table", args=["wa"]))

        self.assertContains(page, "waba_id")
        self.assertEqual(self.graph.requests, [])

    def test_a_refused_token_is_shown_as_metas_error_without_the_token(self) -> None:
        self.channel.config["waba_id"] = self.graph.waba_id
        self.channel.set_secrets({"access_token": "revoked-token", "app_secret": "s", "verify_token": "v"})
        self.channel.save()

        page = self.client.get(reverse("admin:rooms_channel_provider_table", args=["wa"]))

        self.assertContains(page, "Meta error 190")
        self.assertNotContains(page, "revoked-token")

    def test_other_providers_have_no_such_page(self) -> None:
        from tests.support import make_channel

        make_channel("hook", secrets={"signing_secret": "x"})
        self.assertEqual(self.client.get(reverse("admin:rooms_channel_provider_table", args=["hook"])).status_code, 404)
