"""The Graph API, as both Meta adapters call it: one URL scheme, one error shape, one classification.

Every call is ``{api_base}/{api_version}/{path}`` with ``Authorization: Bearer
<token>`` (the WhatsApp system-user token, or the Messenger page token). A
refusal is ``{"error": {"message", "type", "code", "error_subcode",
"error_data", "fbtrace_id"}}``; its ``code`` (and ``error_subcode``) say
whether the same request can succeed later, which Meta's HTTP status often
does not (throttling comes back as a 400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from channels_app.http_client import failure_for_exception, failure_for_response, http_client
from channels_app.providers.base import SendResult
from rooms.models import Channel

DEFAULT_API_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"

# Graph error codes that say "not now" (WhatsApp Cloud API error codes page, Graph API
# rate-limiting page): throttling of the app (4), of the user (17), of the page (32, 613),
# of the WhatsApp account (80007), of the phone number's throughput (130429), of one
# pair of numbers (131056), Meta's own trouble (1, 2, 131000, 131016) and a spam-rate
# limit (131048) that lifts later.
RETRYABLE_CODES = frozenset({"1", "2", "4", "17", "32", "613", "80007", "130429", "131000", "131016", "131048", "131056"})
# Codes that are about our configuration, not this one recipient: an expired or revoked
# token (190), missing permission (10, 200-299 are permission codes; 200 is the common one),
# an account that is locked or restricted (131031, 368). No retry helps; the vendor is healthy.
CONFIGURATION_CODES = frozenset({"190", "10", "200", "131031", "368"})


@dataclass(frozen=True)
class GraphError:
    """A Graph error's ``code``, ``error_subcode`` and its words (``message``, ``error_data.details``)."""

    code: str
    subcode: str
    message: str

    @property
    def text(self) -> str:
        return f"Meta error {self.code}: {self.message}" if self.code else f"Meta error: {self.message}"


def api_base(channel: Channel) -> str:
    return str(channel.config.get("api_base") or DEFAULT_API_BASE).rstrip("/")


def api_version(channel: Channel) -> str:
    return str(channel.config.get("api_version") or DEFAULT_API_VERSION).strip("/")


def graph_url(channel: Channel, path: str) -> str:
    """``{api_base}/{api_version}/{path}``; each segment of ``path`` quoted (ids come from config and payloads)."""
    segments = "/".join(quote(part, safe="") for part in path.strip("/").split("/"))
    return f"{api_base(channel)}/{api_version(channel)}/{segments}"


def graph_error(body: Any) -> GraphError | None:
    """The ``error`` object of a Graph answer (or of a status's ``errors[0]``), if it has one."""
    error = body.get("error") if isinstance(body, dict) and "error" in body else body
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    subcode = error.get("error_subcode")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    words = [w for w in (error.get("title"), error.get("message"), details) if isinstance(w, str) and w]
    words = list(dict.fromkeys(words))
    return GraphError(
        code=str(code) if isinstance(code, (int, str)) and not isinstance(code, bool) else "",
        subcode=str(subcode) if isinstance(subcode, (int, str)) and not isinstance(subcode, bool) else "",
        message=": ".join(words)[:500] or "error",
    )


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def failure_for_graph_response(response: httpx.Response, *, permanent_codes: frozenset[str] = frozenset()) -> SendResult:
    """A refused Graph call as a SendResult: the error code decides where it knows better than the HTTP status.

    ``permanent_codes``: the adapter's own codes that say "never, for this
    recipient or this message" (a closed window, a bad template).
    """
    error = graph_error(json_or_none(response))
    result = failure_for_response(response, detail=error.text if error else None)
    if error is None:
        return result
    result.error_code = error.code
    if error.code in RETRYABLE_CODES:
        result.retryable = True
        result.counts_against_breaker = True
    elif error.code in CONFIGURATION_CODES or error.code in permanent_codes:
        result.retryable = False
        result.counts_against_breaker = False
        result.retry_after = None
    return result


def graph_post(channel: Channel, path: str, *, token: str, body: dict[str, Any]) -> httpx.Response | SendResult:
    """POST JSON to the Graph API; the answer, or a retryable failure when none came."""
    try:
        return http_client().post(graph_url(channel, path), json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return failure_for_exception(exc)


def graph_get(channel: Channel, path: str, *, token: str, params: dict[str, str] | None = None) -> httpx.Response:
    """GET from the Graph API (raises ``httpx.HTTPError`` when no answer came: callers are not sends)."""
    return http_client().get(graph_url(channel, path), params=params, headers={"Authorization": f"Bearer {token}"})


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer`` for media downloads (``channels_app.inbound_media`` sends it to the Graph origin only)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):  # type: ignore[override]
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
