"""The operators' inbox at ``/admin/inbox/``: the conversation list, one conversation, its side panel.

Staff only (the admin's login and ``view_room``); acting needs the console's
operate permission, as on the room page. The page is one template; htmx asks
for its parts (``request.htmx``): the list when a filter changes or the staff
socket says a room moved, the side panel after an action, the composer after a
send. Every view parses the request, checks permission and calls one service
(``rooms.console.actions``, ``rooms.console.inbox``): no rule lives here.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from rooms.console import actions as console
from rooms.console import inbox as inbox_services
from rooms.console.admin.room_console import TIMELINE_LIMIT, _timeline_row
from rooms.console.inbox_selectors import (
    contact_panel,
    filter_choices,
    inbox_rows,
    operators,
    parse_filters,
    teams,
    view_counts,
)
from rooms.enums import ChannelCategory, EventType
from rooms.errors import RoomKitError
from rooms.models import CannedResponse, ChannelBinding, Room, RoomEvent
from rooms.serializers import conversation_state_to_dict

MAX_CANNED = 20


def _require_view(request: HttpRequest) -> None:
    if not (console.can_view_console(request.user) and request.user.has_perm("rooms.view_room")):
        raise PermissionDenied


def _require_operate(request: HttpRequest) -> None:
    if not console.can_operate(request.user):
        raise PermissionDenied


def _error(exc: RoomKitError) -> HttpResponse:
    """A refused action: its message for the page's error line, with the error's 4xx status."""
    response = HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    return response


def _list_context(request: HttpRequest, current: str | None = None) -> dict[str, Any]:
    filters = parse_filters(request.GET)
    return {
        "filters": filters,
        "current": current or request.GET.get("current") or "",
        "rows": inbox_rows(request.user, filters),
        "counts": view_counts(request.user, filters),
    }


def inbox_page(request: HttpRequest, room_id: str | None = None) -> HttpResponse:
    """The whole inbox; with ``room_id``, that conversation open beside the list."""
    _require_view(request)
    try:
        context = _list_context(request, room_id)
    except RoomKitError as exc:
        return _error(exc)
    if request.htmx and request.htmx.target == "rk-inbox-list":
        return TemplateResponse(request, "admin/inbox/_list.html", context)
    room = None
    if room_id is not None:
        room = Room.objects.select_related("operator_read_marker", "assignee", "team").filter(pk=room_id).first()
        if room is None:
            raise Http404("no such conversation")
    context.update(
        {
            **admin.site.each_context(request),
            "title": "Inbox",
            "choices": filter_choices(),
            "can_operate": console.can_operate(request.user),
            "list_url": reverse("rooms_inbox_list"),
        }
    )
    if room is not None:
        context.update(_conversation_context(request, room))
    return TemplateResponse(request, "admin/inbox/inbox.html", context)


def inbox_list(request: HttpRequest) -> HttpResponse:
    """The list alone, as the filters in the query string say (htmx swaps it in)."""
    _require_view(request)
    try:
        return TemplateResponse(request, "admin/inbox/_list.html", _list_context(request))
    except RoomKitError as exc:
        return _error(exc)


def _conversation_context(request: HttpRequest, room: Room) -> dict[str, Any]:
    recent = RoomEvent.objects.filter(room=room).select_related("source_channel", "source_participant").order_by("-seq")
    events = list(recent[:TIMELINE_LIMIT])
    events.reverse()
    marker = getattr(room, "operator_read_marker", None)
    read_seq = marker.seq if marker else 0
    agents = list(
        ChannelBinding.objects.filter(room=room, category=ChannelCategory.INTELLIGENCE).values_list("channel_id", flat=True)
    )
    return {
        "room": room,
        "timeline": [_timeline_row(e, read_seq) for e in events],
        "read_seq": read_seq,
        "state": conversation_state_to_dict(room),
        "human": (room.conversation_state or {}).get("human"),
        "handoffs": [e for e in events if e.type == EventType.HANDOFF],
        "agents": agents,
        "operators": operators(),
        "teams": teams(),
        "room_labels": {label.name for label in room.labels.all()},
        "all_labels": filter_choices()["labels"],
        "contact": contact_panel(room),
        "form_token": uuid.uuid4().hex,
        "socket_path": f"/ws/staff/rooms/{room.pk}/",
        "rows_url": reverse("admin:rooms_room_timeline", args=[room.pk]),
    }


def _room_or_404(room_id: str) -> Room:
    room = Room.objects.select_related("operator_read_marker", "assignee", "team").filter(pk=room_id).first()
    if room is None:
        raise Http404("no such conversation")
    return room


@require_GET
def side_panel(request: HttpRequest, room_id: str) -> HttpResponse:
    _require_view(request)
    room = _room_or_404(room_id)
    context = {**_conversation_context(request, room), "can_operate": console.can_operate(request.user)}
    return TemplateResponse(request, "admin/inbox/_panel.html", context)


@require_POST
def send(request: HttpRequest, room_id: str) -> HttpResponse:
    """A reply to the customer (``mode=reply``) or a private note (``mode=note``), without reloading the page.

    An image in ``file`` is sent as media, the text as its caption.
    """
    _require_operate(request)
    room = _room_or_404(room_id)
    mode = request.POST.get("mode", "reply")
    if mode not in ("reply", "note"):
        return HttpResponse("mode must be reply or note", status=400)
    post = console.console_note if mode == "note" else console.console_reply
    try:
        text, token = request.POST.get("text", ""), request.POST.get("token")
        attachment = request.FILES.get("file")
        result = post(user=request.user, room_id=room.pk, text=text, idempotency_key=token, attachment=attachment)
    except RoomKitError as exc:
        return _error(exc)
    context = {"room": room, "form_token": uuid.uuid4().hex, "mode": mode, "can_operate": True}
    if result.blocked:
        context["notice"] = f"Stored but blocked: {result.reason}"
    response = TemplateResponse(request, "admin/inbox/_composer.html", context)
    return trigger_client_event(response, "rk-sent", {"seq": result.seq, "mode": mode})


@require_POST
def act(request: HttpRequest, room_id: str, action: str) -> HttpResponse:
    """One action of the side panel (assign, status, snooze, labels, take over, hand back, hand off); the panel again."""
    _require_operate(request)
    room = _room_or_404(room_id)
    params = {k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "label")}
    if action == "set_labels":
        # The panel's checkboxes: one "label" per checked box, none when all are cleared.
        params["labels"] = ",".join(request.POST.getlist("label"))
    try:
        outcome = inbox_services.inbox_action(user=request.user, room_id=room.pk, action=action, params=params)
    except RoomKitError as exc:
        return _error(exc)
    room = _room_or_404(room_id)
    context = {**_conversation_context(request, room), "can_operate": True, "notice": outcome}
    response = TemplateResponse(request, "admin/inbox/_panel.html", context)
    return trigger_client_event(response, "rk-list-changed")


@require_POST
def typing(request: HttpRequest, room_id: str) -> HttpResponse:
    """The operator is typing (``state=start``) or stopped (``stop``): the customer sees it."""
    _require_operate(request)
    state = request.POST.get("state")
    if state not in ("start", "stop"):
        return HttpResponse("state must be start or stop", status=400)
    room = _room_or_404(room_id)
    inbox_services.operator_typing(request.user, room.pk, state == "start")
    return HttpResponse(status=204)


@require_POST
def read(request: HttpRequest, room_id: str) -> HttpResponse:
    """The operator read the conversation up to ``seq``: the team's marker, and "Seen" for the customer."""
    _require_operate(request)
    room = _room_or_404(room_id)
    try:
        seq = int(request.POST.get("seq", ""))
    except ValueError:
        return HttpResponse("seq must be a whole number", status=400)
    seq = max(0, min(seq, room.last_seq))
    try:
        marker = inbox_services.operator_read(request.user, room.pk, seq)
    except RoomKitError as exc:
        return _error(exc)
    return JsonResponse({"read_seq": marker})


@require_GET
def canned(request: HttpRequest) -> HttpResponse:
    """Saved replies whose shortcut starts with ``q`` (the composer's ``/`` menu)."""
    _require_view(request)
    q = (request.GET.get("q") or "").strip().lstrip("/")[:50]
    rows = CannedResponse.objects.filter(shortcut__startswith=q) if q else CannedResponse.objects.all()
    return JsonResponse({"results": [{"shortcut": c.shortcut, "text": c.text} for c in rows[:MAX_CANNED]]})


@require_POST
def presence(request: HttpRequest) -> HttpResponse:
    """Set yourself away (``away=1``) or available (``away=0``)."""
    _require_view(request)
    away = request.POST.get("away")
    if away not in ("0", "1"):
        return HttpResponse("away must be 0 or 1", status=400)
    inbox_services.presence_set_away(request.user, away == "1")
    return JsonResponse({"away": away == "1"})


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login, landing in the inbox unless the login was asked for elsewhere (``?next=``)."""
    if REDIRECT_FIELD_NAME in request.GET or REDIRECT_FIELD_NAME in request.POST:
        return admin.site.login(request)
    # The login form's hidden "next" (the admin sets it to its index).
    return admin.site.login(request, extra_context={REDIRECT_FIELD_NAME: reverse("rooms_inbox")})


def urls() -> list[Any]:
    wrap = admin.site.admin_view
    return [
        path("", wrap(inbox_page), name="rooms_inbox"),
        path("list/", wrap(inbox_list), name="rooms_inbox_list"),
        path("canned/", wrap(canned), name="rooms_inbox_canned"),
        path("presence/", wrap(presence), name="rooms_inbox_presence"),
        path("c/<str:room_id>/", wrap(inbox_page), name="rooms_inbox_room"),
        path("c/<str:room_id>/panel/", wrap(side_panel), name="rooms_inbox_panel"),
        path("c/<str:room_id>/send/", wrap(send), name="rooms_inbox_send"),
        path("c/<str:room_id>/typing/", wrap(typing), name="rooms_inbox_typing"),
        path("c/<str:room_id>/read/", wrap(read), name="rooms_inbox_read"),
        path("c/<str:room_id>/action/<str:action>/", wrap(act), name="rooms_inbox_action"),
    ]
