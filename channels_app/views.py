"""Provider webhooks: verify, parse, hand to the inbound path, answer.

The view is the edge: it finds the channel's adapter, lets it check the
signature and parse the vendor's payload, and stores what the adapter read
(``_store``): each message through ``process_inbound``, each status update
through ``delivery_apply_status``. Adapters only verify and parse; a vendor
that sends messages and status events to either URL gets both stored the
same way. A bad signature is a 403 and nothing is stored.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_app.providers import InboundParse, get_provider
from channels_app.services import delivery_apply_status
from rooms.errors import NotFound
from rooms.inbound import InboundResult, process_inbound
from rooms.infra.http import allow_methods, error_response, json_errors
from rooms.models import Channel
from rooms.selectors import get_channel

logger = logging.getLogger(__name__)


def _channel_and_provider(channel_id: str):
    channel = get_channel(channel_id)
    provider = get_provider(channel.provider) if channel.enabled else None
    if provider is None:
        raise NotFound(f"channel '{channel_id}' takes no webhooks", code="unknown_channel")
    return channel, provider


def _store(channel: Channel, parsed: InboundParse) -> tuple[list[InboundResult], int]:
    """Store what the adapter read: the results of its messages, and how many deliveries its status updates moved."""
    results = [process_inbound(m) for m in parsed.messages]
    changed = sum(delivery_apply_status(channel=channel, update=u) for u in parsed.status_updates)
    return results, changed


@csrf_exempt
@allow_methods("GET", "POST")
@json_errors
def webhook(request: HttpRequest, channel_id: str) -> HttpResponse:
    channel, provider = _channel_and_provider(channel_id)
    if request.method == "GET":
        answer = provider.handshake(channel, request)
        return answer if answer is not None else error_response(405, "method_not_allowed", "use POST")
    if not provider.verify_request(channel, request):
        logger.info("webhook %s: signature check failed", channel_id)
        return error_response(403, "invalid_signature", "signature missing or invalid")
    parsed = provider.parse_inbound(channel, request)
    results, changed = _store(channel, parsed)
    if results:
        return provider.inbound_response(channel, results)
    return parsed.response if parsed.response is not None else JsonResponse({"updated": changed})


@csrf_exempt
@allow_methods("POST")
@json_errors
def webhook_status(request: HttpRequest, channel_id: str) -> HttpResponse:
    channel, provider = _channel_and_provider(channel_id)
    if not provider.verify_request(channel, request):
        return error_response(403, "invalid_signature", "signature missing or invalid")
    parsed = provider.parse_status(channel, request)
    if not isinstance(parsed, InboundParse):
        parsed = InboundParse([], status_updates=parsed)
    _results, changed = _store(channel, parsed)
    return parsed.response if parsed.response is not None else JsonResponse({"updated": changed})
