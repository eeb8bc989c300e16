"""How a delivery reaches the channel's running client.

Deliveries are sent by ``deliver_event_task`` in Celery workers, but a
WhatsApp Personal account can be connected from one client only, and that
client lives in the supervisor's process (``manage.py
run_whatsapp_personal``). So the provider's ``send`` hands the delivery over:

- when the channel's runner is in this very process (the embedded mode, or a
  supervisor that also runs tasks), it is called directly;
- otherwise the request goes on a Redis list per channel
  (``roomkit:wap:<channel>:sends``) that the supervisor's ``serve_sends``
  thread pops, and the worker waits on a reply list of its own for the answer
  (WhatsApp's message id, or the error and whether a retry may help).

A request carries a deadline: one the supervisor pops too late (the worker
stopped waiting and its task will retry) is dropped unsent. Each sent part is
noted under the delivery's idempotency key (``expiring_keys``) before the
answer goes back, so a retry after an answer that was lost sends nothing
twice and returns the first id. Redis rather than the database: a send is a
request-reply that lives seconds; the delivery row stays the outbox.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from channels_app.http_client import http_client
from channels_app.inbound_media import MediaFetchError, _read_capped
from channels_app.providers import expiring_keys
from rooms.content.kinds import content_text

if TYPE_CHECKING:
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

    from channels_app.providers.neonize.supervisor import ChannelRunner

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 30.0
# A request popped with less than this left before its deadline is not started.
START_MARGIN_SECONDS = 5.0
SENT_NOTE_TTL_SECONDS = 7 * 24 * 3600
_local_runners: dict[str, ChannelRunner] = {}
_local_lock = threading.Lock()


def register_local_runner(runner: ChannelRunner) -> None:
    with _local_lock:
        _local_runners[runner.channel_id] = runner


def unregister_local_runner(runner: ChannelRunner) -> None:
    with _local_lock:
        if _local_runners.get(runner.channel_id) is runner:
            del _local_runners[runner.channel_id]


def shared_queue_available() -> bool:
    return bool(settings.REDIS_URL)


def queue_key(channel_id: str) -> str:
    return f"roomkit:wap:{channel_id}:sends"


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    # No socket timeout shorter than a blocking pop's wait.
    return redis.Redis.from_url(url, socket_timeout=SEND_TIMEOUT_SECONDS + 10, socket_connect_timeout=5)


def failure(error: str, *, retryable: bool = True, code: str = "") -> dict[str, Any]:
    return {"ok": False, "error": error, "retryable": retryable, "error_code": code}


def request_send(channel_id: str, request: dict[str, Any], *, timeout: float = SEND_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Send ``request`` (``key``, ``recipient``, ``content``) through the channel's client; the answer as a dict."""
    with _local_lock:
        runner = _local_runners.get(channel_id)
    if runner is not None:
        return perform_send(runner, request)
    if not shared_queue_available():
        return failure(
            "no WhatsApp Personal client runs in this process and there is no REDIS_URL to reach one",
            code="client_unreachable",
        )
    r = _redis(settings.REDIS_URL)
    reply_to = f"roomkit:wap:reply:{uuid.uuid4().hex}"
    r.rpush(queue_key(channel_id), json.dumps({**request, "reply_to": reply_to, "deadline": time.time() + timeout}))
    answer = r.blpop([reply_to], timeout=math.ceil(timeout + 2))
    if answer is None:
        return failure(f"no WhatsApp Personal supervisor answered within {timeout:.0f}s", code="client_unreachable")
    return json.loads(answer[1])


def serve_sends(runner: ChannelRunner, stop: threading.Event, *, poll_seconds: int = 1) -> None:
    """Pop and send the channel's requests until ``stop`` (the supervisor's thread)."""
    r = _redis(settings.REDIS_URL)
    key = queue_key(runner.channel_id)
    while not stop.is_set():
        try:
            item = r.blpop([key], timeout=poll_seconds)
        except Exception:  # Redis away for a moment: the workers' requests wait in the list
            logger.warning("whatsapp_personal %s: the send queue is unreachable", runner.channel_id, exc_info=True)
            stop.wait(poll_seconds)
            continue
        if item is None:
            continue
        try:
            request = json.loads(item[1])
            reply_to, deadline = str(request["reply_to"]), float(request["deadline"])
        except (ValueError, KeyError, TypeError):
            logger.warning("whatsapp_personal %s: a malformed send request was dropped", runner.channel_id)
            continue
        if time.time() > deadline - START_MARGIN_SECONDS:
            continue  # its worker has given up (or is about to); the delivery's retry comes again
        answer = perform_send(runner, request)
        r.rpush(reply_to, json.dumps(answer))
        r.expire(reply_to, 60)


def perform_send(runner: ChannelRunner, request: dict[str, Any]) -> dict[str, Any]:
    """Send one delivery's content through the runner's connected client, part by part, each at most once."""
    client = runner.client
    if client is None:
        return failure("the WhatsApp Personal client is not connected", code="not_connected")
    try:
        recipient = str(request["recipient"])
        from channels_app.providers.neonize.client import jid_from_str

        jid_from_str(recipient)
    except (KeyError, ValueError) as exc:
        return failure(f"not a WhatsApp address: {exc}", retryable=False, code="invalid_recipient")
    key = str(request.get("key") or "")
    content = request.get("content") or {}
    parts = content.get("parts") if content.get("type") == "composite" else [content]
    message_id = ""
    for index, part in enumerate(parts or []):
        note_key = f"wap-sent:{runner.channel_id}:{key}:{index}"
        sent = expiring_keys.read_note(note_key) if key else None
        if sent:
            message_id = sent
            continue
        try:
            message = _message_for(client, part)
        except MediaFetchError as exc:
            return failure(f"media not fetched: {exc.message}", retryable=exc.reason in ("network", "http_503"), code="media")
        if message is None:
            continue
        try:
            message_id = client.send_message(recipient, message)
        except Exception as exc:  # neonize raises SendMessageError with whatsmeow's text
            return failure(f"{type(exc).__name__}: {exc}"[:500], code="send_failed")
        if key:
            expiring_keys.note(note_key, message_id, SENT_NOTE_TTL_SECONDS)
    if not message_id:
        return failure("nothing to send", retryable=False, code="empty")
    return {"ok": True, "provider_message_id": message_id}


_MEDIA_KIND = {"image/": "image", "video/": "video", "audio/": "audio"}


def _message_for(client: Any, part: dict[str, Any]) -> wa.Message | None:
    # Imported here: neonize loads its 18 MB Go library on import, which only the supervisor's process needs.
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

    kind = part.get("type")
    if kind == "location":
        location = wa.LocationMessage(degreesLatitude=float(part["latitude"]), degreesLongitude=float(part["longitude"]))
        if part.get("label"):
            location.name = str(part["label"])
        if part.get("address"):
            location.address = str(part["address"])
        return wa.Message(locationMessage=location)
    if kind in ("media", "audio", "video") and part.get("url"):
        data, mime = _fetch(str(part["url"]), str(part.get("mime_type") or ""))
        media_kind = next((v for prefix, v in _MEDIA_KIND.items() if mime.startswith(prefix)), "document")
        return client.build_media_message(
            media_kind, data, mime_type=mime, caption=str(part.get("caption") or ""), filename=str(part.get("filename") or "")
        )
    text = content_text(part)
    return wa.Message(conversation=text) if text else None


def _fetch(url: str, declared: str) -> tuple[bytes, str]:
    """The bytes of a media part to upload (our own stored files, served at their public URL)."""
    try:
        with http_client().stream("GET", url, timeout=15.0) as response:
            if response.status_code != 200:
                raise MediaFetchError(f"http_{response.status_code}", f"the media URL answered HTTP {response.status_code}")
            data = _read_capped(response, settings.ROOMKIT_MAX_UPLOAD_BYTES)
            mime = declared or response.headers.get("Content-Type", "").split(";", 1)[0] or "application/octet-stream"
            return data, mime
    except httpx.HTTPError as exc:
        raise MediaFetchError("network", f"{type(exc).__name__} while fetching media") from None
