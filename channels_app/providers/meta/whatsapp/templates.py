"""The WhatsApp account's message templates, for the channel's admin page.

``GET {api_base}/{api_version}/{waba_id}/message_templates`` with the access
token (Business Management API "Message templates"), following ``paging.next``
up to ``MAX_PAGES``. Only an approved template can be sent; the others are
listed so an operator sees why theirs cannot be. Read when the page is opened,
never stored: Meta is the record.
"""

from __future__ import annotations

from typing import Any

import httpx

from channels_app.providers.meta import graph
from rooms.models import Channel
from rooms.registries import ChannelTable

TITLE = "WhatsApp message templates"
COLUMNS = ("Name", "Language", "Status", "Category", "Body")
FIELDS = "name,language,status,category,components"
PAGE_SIZE = "100"
MAX_PAGES = 5


def _body_text(components: Any) -> str:
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and component.get("type") == "BODY" and isinstance(component.get("text"), str):
            return component["text"]
    return ""


def _row(template: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(template.get(k) or "") for k in ("name", "language", "status", "category")) + (
        _body_text(template.get("components")),
    )


def message_templates_table(channel: Channel) -> ChannelTable:
    """The templates of the channel's WhatsApp Business Account, or a table that says why they cannot be read."""
    waba_id = str(channel.config.get("waba_id") or "").strip()
    token = channel.get_secret("access_token")
    if not waba_id:
        return ChannelTable(TITLE, error="Set the channel's 'waba_id' (WhatsApp Business Account id) to list its templates.")
    if not token:
        return ChannelTable(TITLE, error="The channel has no 'access_token' secret.")
    rows: list[tuple[str, ...]] = []
    params: dict[str, str] | None = {"fields": FIELDS, "limit": PAGE_SIZE}
    path = f"{waba_id}/message_templates"
    for _page in range(MAX_PAGES):
        try:
            response = graph.graph_get(channel, path, token=token, params=params)
        except httpx.HTTPError as exc:
            return ChannelTable(TITLE, error=f"Meta did not answer ({type(exc).__name__}).")
        body = graph.json_or_none(response)
        if response.status_code != 200:
            error = graph.graph_error(body)
            return ChannelTable(TITLE, error=error.text if error else f"Meta answered HTTP {response.status_code}.")
        data = body.get("data") if isinstance(body, dict) else None
        rows.extend(_row(t) for t in data or [] if isinstance(t, dict))
        cursors = ((body.get("paging") or {}).get("cursors") or {}) if isinstance(body, dict) else {}
        has_next = isinstance(body, dict) and isinstance((body.get("paging") or {}).get("next"), str)
        if not has_next or not cursors.get("after"):
            break
        params = {"fields": FIELDS, "limit": PAGE_SIZE, "after": str(cursors["after"])}
    note = "Only APPROVED templates can be sent outside the 24-hour customer-service window."
    return ChannelTable(TITLE, columns=COLUMNS, rows=tuple(rows), note=note)
