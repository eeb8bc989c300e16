"""Rooms in the console: the list operators work from and the room page with its actions.

The views parse the request, check the user's permission and call one service
of ``rooms.console.actions``; they hold no rule of their own.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, Prefetch, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from rooms.console import actions as console
from rooms.console.admin.rendering import render_content
from rooms.enums import Access, ChannelCategory, ChannelType, DeliveryStatus, EventStatus, EventType, Visibility
from rooms.errors import RoomKitError
from rooms.models import ChannelBinding, Delivery, Observation, Participant, Room, RoomEvent, Task
from rooms.serializers import conversation_state_to_dict

TIMELINE_LIMIT = 500
DELIVERY_LIMIT = 200


class ChannelTypeFilter(admin.SimpleListFilter):
    title = "channel type"
    parameter_name = "channel_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(value, label) for value, label in ChannelType.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> QuerySet[Room]:
        if self.value():
            return queryset.filter(pk__in=ChannelBinding.objects.filter(channel__channel_type=self.value()).values("room_id"))
        return queryset


class ActiveAgentFilter(admin.SimpleListFilter):
    title = "active agent"
    parameter_name = "agent"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        agents = ChannelBinding.objects.filter(category=ChannelCategory.INTELLIGENCE).values_list("channel_id", flat=True)
        return [("__human__", "A human operator"), *[(a, a) for a in sorted(set(agents))]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> QuerySet[Room]:
        value = self.value()
        if value == "__human__":
            return queryset.filter(conversation_state__human__isnull=False).exclude(conversation_state__human=None)
        if value:
            return queryset.filter(conversation_state__active_agent_id=value)
        return queryset


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["room_link", "status", "channel_list", "participant_list", "active_agent", "last_activity_at", "unread"]
    list_filter = ["status", ChannelTypeFilter, ActiveAgentFilter, ("last_activity_at", admin.DateFieldListFilter)]
    search_fields = [
        "id",
        "name",
        "participants__display_name",
        "participants__address",
        "bindings__address",
        "events__content__body",
    ]
    list_per_page = 50
    # The first column links to the room page itself; no second link around it.
    list_display_links = None
    change_list_template = "admin/rooms/room/change_list.html"
    actions = ["close_rooms"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        # Every column comes from this query and two prefetches: the list
        # costs the same number of queries for 5 rooms or 50.
        return (
            super()
            .get_queryset(request)
            .select_related("operator_read_marker")
            .annotate(unread_count=Greatest(F("last_seq") - Coalesce(F("operator_read_marker__seq"), Value(0)), Value(0)))
            .prefetch_related(
                Prefetch("bindings", queryset=ChannelBinding.objects.select_related("channel").order_by("id")),
                Prefetch("participants", queryset=Participant.objects.order_by("joined_at", "id")),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rooms open through the inbound path and rooms.services

    def has_change_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        return False  # state changes are the room page's actions, through services

    def has_delete_permission(self, request: HttpRequest, obj: Room | None = None) -> bool:
        # Deleting a room would take its events (the gapless log) with it, and
        # skip the lifecycle's hooks and system events: rooms are closed instead.
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not console.can_operate(request.user):
            actions.pop("close_rooms", None)
        return actions

    @admin.action(description="Close the selected rooms")
    def close_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        if not console.can_operate(request.user):
            raise PermissionDenied
        closed = 0
        for room_id in queryset.values_list("pk", flat=True):
            try:
                console.console_room_action(user=request.user, room_id=room_id, action="close", params={})
            except RoomKitError as exc:
                self.message_user(request, f"{room_id}: {exc.message}", messages.WARNING)
            else:
                closed += 1
        self.message_user(request, f"{closed} room{'' if closed == 1 else 's'} closed.")

    @admin.display(description="Room", ordering="name")
    def room_link(self, room: Room) -> str:
        url = reverse("admin:rooms_room_console", args=[room.pk])
        return format_html('<a href="{}" data-room-id="{}">{}</a>', url, room.pk, room.name or room.pk)

    @admin.display(description="Channels")
    def channel_list(self, room: Room) -> str:
        return ", ".join(sorted({b.channel.channel_type for b in room.bindings.all()})) or "—"

    @admin.display(description="Participants")
    def participant_list(self, room: Room) -> str:
        return ", ".join(p.display_name or p.address or p.id for p in room.participants.all()) or "—"

    @admin.display(description="Active agent")
    def active_agent(self, room: Room) -> str:
        state = room.conversation_state or {}
        human = state.get("human")
        if human:
            return f"human: {human.get('operator') or 'waiting'}"
        return state.get("active_agent_id") or "—"

    @admin.display(description="Unread", ordering="unread_count")
    def unread(self, room: Room) -> Any:
        count = getattr(room, "unread_count", 0)
        return format_html('<span class="rk-unread" data-unread="{}">{}</span>', count, count or "")

    # --- the room page ---------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<str:room_id>/console/", wrap(self.room_view), name="rooms_room_console"),
            path("<str:room_id>/console/timeline/", wrap(self.timeline_view), name="rooms_room_timeline"),
            path("<str:room_id>/console/reply/", wrap(self.reply_view), name="rooms_room_reply"),
            path("<str:room_id>/console/note/", wrap(self.note_view), name="rooms_room_note"),
            path("<str:room_id>/console/read/", wrap(self.read_view), name="rooms_room_read"),
            path("<str:room_id>/console/action/<str:action>/", wrap(self.action_view), name="rooms_room_action"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:rooms_room_console", args=[object_id]))

    def _require_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def _require_operate(self, request: HttpRequest) -> None:
        if not console.can_operate(request.user):
            raise PermissionDenied

    def room_view(self, request: HttpRequest, room_id: str) -> HttpResponse:
        self._require_view(request)
        room = Room.objects.select_related("operator_read_marker").filter(pk=room_id).first()
        if room is None:
            raise Http404("no such room")
        bindings = list(ChannelBinding.objects.filter(room_id=room_id).select_related("channel", "participant").order_by("id"))
        participants = list(Participant.objects.filter(room_id=room_id).select_related("channel").order_by("joined_at", "id"))
        events = list(
            RoomEvent.objects.filter(room_id=room_id)
            .select_related("source_channel", "source_participant")
            .order_by("-seq")[:TIMELINE_LIMIT]
        )
        events.reverse()
        deliveries = list(
            Delivery.objects.filter(event__room_id=room_id).select_related("channel", "event").order_by("-id")[:DELIVERY_LIMIT]
        )
        tasks = list(Task.objects.filter(room_id=room_id).order_by("-created_at"))
        observations = list(Observation.objects.filter(room_id=room_id).order_by("-created_at"))
        # A GET never writes: the page marks what it shows as read with a POST (read_view).
        marker = getattr(room, "operator_read_marker", None)
        read_seq = marker.seq if marker else 0
        state = conversation_state_to_dict(room)
        human = (room.conversation_state or {}).get("human")
        agents = [b.channel_id for b in bindings if b.category == ChannelCategory.INTELLIGENCE]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Room {room.name or room.pk}",
            "opts": self.model._meta,
            "room": room,
            "bindings": bindings,
            "participants": participants,
            "timeline": [_timeline_row(e, read_seq) for e in events],
            "timeline_truncated": room.last_seq > TIMELINE_LIMIT and len(events) == TIMELINE_LIMIT,
            "handoffs": [e for e in events if e.type == EventType.HANDOFF],
            "state": state,
            "human": human,
            "agents": agents,
            "tasks": tasks,
            "observations": observations,
            "deliveries": deliveries,
            "retryable": {DeliveryStatus.FAILED, DeliveryStatus.DEAD},
            "access_choices": Access.values,
            "can_operate": console.can_operate(request.user),
            "form_token": uuid.uuid4().hex,
            "read_seq": read_seq,
            "staff_socket_path": f"/ws/staff/rooms/{room.pk}/",
        }
        return TemplateResponse(request, "admin/rooms/room/console.html", context)

    def timeline_view(self, request: HttpRequest, room_id: str) -> HttpResponse:
        """The timeline rows after ``after_seq``, rendered as on the page (the live script appends them)."""
        self._require_view(request)
        try:
            after_seq = max(int(request.GET.get("after_seq", "0")), 0)
        except ValueError:
            after_seq = 0
        room = Room.objects.select_related("operator_read_marker").filter(pk=room_id).first()
        if room is None:
            raise Http404("no such room")
        events = list(
            RoomEvent.objects.filter(room_id=room_id, seq__gt=after_seq)
            .select_related("source_channel", "source_participant")
            .order_by("seq")[:TIMELINE_LIMIT]
        )
        marker = getattr(room, "operator_read_marker", None)
        read_seq = marker.seq if marker else 0
        return TemplateResponse(
            request, "admin/rooms/room/_timeline_rows.html", {"timeline": [_timeline_row(e, read_seq) for e in events]}
        )

    def _back(self, room_id: str) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:rooms_room_console", args=[room_id]))

    def reply_view(self, request: HttpRequest, room_id: str) -> HttpResponse:
        return self._message(request, room_id, note=False)

    def note_view(self, request: HttpRequest, room_id: str) -> HttpResponse:
        return self._message(request, room_id, note=True)

    def _message(self, request: HttpRequest, room_id: str, *, note: bool) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require_operate(request)
        send = console.console_note if note else console.console_reply
        try:
            result = send(
                user=request.user, room_id=room_id, text=request.POST.get("text", ""), idempotency_key=request.POST.get("token")
            )
        except RoomKitError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            if result.blocked:
                self.message_user(request, f"Your message was stored but blocked: {result.reason}", messages.WARNING)
            else:
                self.message_user(request, "Note added." if note else "Reply sent.")
        return self._back(room_id)

    def read_view(self, request: HttpRequest, room_id: str) -> HttpResponse:
        """Mark the room read up to ``seq`` (what the page shows); the page posts it, a GET never does."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require_operate(request)
        room = Room.objects.filter(pk=room_id).only("last_seq").first()
        if room is None:
            raise Http404("no such room")
        try:
            seq = int(request.POST.get("seq", ""))
        except ValueError:
            return JsonResponse({"error": {"code": "invalid_seq", "message": "seq must be a whole number"}}, status=400)
        # Never past what exists: a marker ahead of the log would hide the next events.
        marker = console.console_mark_read(user=request.user, room_id=room_id, seq=max(0, min(seq, room.last_seq)))
        if "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"read_seq": marker})
        return self._back(room_id)

    def action_view(self, request: HttpRequest, room_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require_operate(request)
        params = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        try:
            outcome = console.console_room_action(user=request.user, room_id=room_id, action=action, params=params)
        except RoomKitError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, outcome.message)
        return self._back(room_id)


def _timeline_row(event: RoomEvent, read_seq: int) -> dict[str, Any]:
    participant = event.source_participant
    return {
        "event": event,
        "html": render_content(event.content or {}),
        "channel": event.source_channel_id or "system",
        "channel_type": event.source_channel.channel_type if event.source_channel else "",
        "who": (participant.display_name or participant.address) if participant else "",
        "blocked": event.status == EventStatus.BLOCKED,
        "internal": event.visibility == Visibility.INTERNAL,
        "unread": event.seq > read_seq,
        # The team's or an agent's message to the customer (the inbox marks the one they have seen).
        "ours": event.type == EventType.MESSAGE
        and event.visibility != Visibility.INTERNAL
        and event.source_channel is not None
        and event.source_channel.channel_type in (ChannelType.CONSOLE, ChannelType.AI),
    }
