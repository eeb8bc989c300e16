"""Provider webhooks: verify, parse, hand to the inbound path, answer.

The view is the edge: it finds the channel's adapter, lets it check the
signature and parse the vendor's payload, and calls ``process_inbound`` for
each message. A bad signature is a 403 and nothing is stored.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from channels_app.providers import get_provider
from channels_app.services import delivery_apply_status
from rooms.errors import NotFound
from rooms.inbound import process_inbound
from rooms.infra.http import allow_methods, error_response, json_errors
from rooms.selectors import get_channel

logger = logging.getLogger(__name__)


def _channel_and_provider(channel_id: str):
    channel = get_channel(channel_id)
    provider = get_provider(channel.provider) if channel.enabled else None
    if provider is None:
        raise NotFound(f"channel '{channel_id}' takes no webhooks", code="unknown_channel")
    return channel, provider


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
    results = [process_inbound(m) for m in parsed.messages]
    if parsed.response is not None:
        return parsed.response
    return provider.inbound_response(channel, results)


@csrf_exempt
@allow_methods("POST")
@json_errors
def webhook_status(request: HttpRequest, channel_id: str) -> HttpResponse:
    channel, provider = _channel_and_provider(channel_id)
    if not provider.verify_request(channel, request):
        return error_response(403, "invalid_signature", "signature missing or invalid")
    updates = provider.parse_status(channel, request)
    changed = sum(delivery_apply_status(channel=channel, update=u) for u in updates)
    return JsonResponse({"updated": changed})
