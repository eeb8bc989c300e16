"""What the two Meta adapters share as providers: the subscription handshake, the signature, one URL for everything."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from channels_app.providers.base import ConfigField, InboundParse, StatusUpdate, inbound_json_response
from channels_app.providers.meta import graph, webhooks
from rooms.inbound import InboundResult
from rooms.models import Channel

# Every Meta channel may point at another Graph version or host (a regional endpoint, a test's fake).
GRAPH_CONFIG_FIELDS = (
    ConfigField("api_version", "Graph API version", help=f"Default {graph.DEFAULT_API_VERSION}"),
    ConfigField("api_base", "API base URL", help=f"Default {graph.DEFAULT_API_BASE}"),
)


class MetaWebhookProvider:
    """Webhooks as Meta sends them for any of its products; each subclass has its own ``parse_inbound``."""

    def handshake(self, channel: Channel, request: HttpRequest) -> HttpResponse | None:
        return webhooks.verification_handshake(channel, request)

    def verify_request(self, channel: Channel, request: HttpRequest) -> bool:
        return webhooks.verify_meta_request(channel, request)

    def inbound_response(self, channel: Channel, results: list[InboundResult]) -> HttpResponse:
        return inbound_json_response(results)

    def parse_status(self, channel: Channel, request: HttpRequest) -> list[StatusUpdate] | InboundParse:
        # Meta posts statuses to the one callback URL of the app; one posted to the status URL is read the same way.
        return self.parse_inbound(channel, request)
