"""What the inbox shows: the conversation list (filters, search, counts) and one conversation with its side panel.

The list costs a constant number of queries whatever the number of rooms: one
for the rows (each row's last message and unread count are subqueries on the
``(room, seq)`` index, evaluated for the page's rows only), three prefetches
(people, channels, labels) and one for the counts of the views. Search uses
the events' full-text index (``rooms.console.search``), never their JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Count, F, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import QueryDict

from rooms.console.inbox import is_customer_channel_type
from rooms.console.search import rooms_with_text, search_words
from rooms.content.kinds import content_text
from rooms.enums import ChannelCategory, ChannelType, ConversationStatus, EventType, ParticipantRole, RoomStatus
from rooms.errors import InvalidInput
from rooms.models import ChannelBinding, Identity, IdentityAddress, Label, Participant, Room, RoomEvent

PAGE_SIZE = 50
PREVIEW_CHARS = 120
VIEWS = ("mine", "unassigned", "all")
STATUSES = (*ConversationStatus.values, "any")
MAX_QUERY_CHARS = 200


@dataclass(frozen=True)
class InboxFilters:
    view: str = "all"
    status: str = ConversationStatus.OPEN
    channel: str = ""
    agent: str = ""
    label: str = ""
    q: str = ""

    def query_string(self, **override: str) -> str:
        """The filters as a query string (``override`` replacing some), for links that keep the rest."""
        values = {k: v for k, v in {**self.__dict__, **override}.items() if v}
        params = QueryDict(mutable=True)
        params.update(values)
        return params.urlencode()


def parse_filters(params: QueryDict) -> InboxFilters:
    """The list's filters from a query string; an unknown value is refused (``InvalidInput``: a 400)."""
    view = params.get("view") or "all"
    status = params.get("status") or ConversationStatus.OPEN
    channel = params.get("channel") or ""
    q = (params.get("q") or "").strip()
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}", code="invalid_view")
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
    if channel and channel not in ChannelType.values:
        raise InvalidInput(f"unknown channel type '{channel}'", code="invalid_channel")
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the search is longer than {MAX_QUERY_CHARS} characters", code="invalid_query")
    return InboxFilters(view, status, channel, (params.get("agent") or "")[:64], (params.get("label") or "")[:50], q)


@dataclass
class InboxRow:
    room: Room
    name: str
    address: str
    channel_type: str
    preview: str
    # Who wrote the preview when it is not the customer: "You" (the team) or the agent's name.
    preview_by: str
    unread: int
    labels: list[Label] = field(default_factory=list)


def _filtered(user: AbstractBaseUser, filters: InboxFilters, *, with_view: bool = True) -> QuerySet[Room]:
    rooms = Room.objects.exclude(status=RoomStatus.ARCHIVED)
    if filters.status != "any":
        rooms = rooms.filter(conversation_status=filters.status)
    if with_view and filters.view == "mine":
        rooms = rooms.filter(assignee=user)
    elif with_view and filters.view == "unassigned":
        rooms = rooms.filter(assignee__isnull=True)
    if filters.channel:
        rooms = rooms.filter(pk__in=ChannelBinding.objects.filter(channel__channel_type=filters.channel).values("room_id"))
    if filters.agent == "__human__":
        rooms = rooms.filter(conversation_state__human__isnull=False).exclude(conversation_state__human=None)
    elif filters.agent:
        rooms = rooms.filter(conversation_state__active_agent_id=filters.agent)
    if filters.label:
        rooms = rooms.filter(labels__name=filters.label)
    if search_words(filters.q):
        text = filters.q
        people = Participant.objects.filter(
            Q(display_name__icontains=text) | Q(address__icontains=text) | Q(identity__display_name__icontains=text)
        ).values("room_id")
        rooms = rooms.filter(Q(pk__in=people) | Q(pk__in=rooms_with_text(text)) | Q(name__icontains=text))
    return rooms


def inbox_rows(user: AbstractBaseUser, filters: InboxFilters, *, limit: int = PAGE_SIZE) -> list[InboxRow]:
    """The page's conversations, newest activity first."""
    last_message = RoomEvent.objects.filter(room=OuterRef("pk"), type=EventType.MESSAGE).order_by("-seq")
    # Unread: the customers' messages after the team's read marker (not the team's, the agents' or system events).
    unread = (
        RoomEvent.objects.filter(
            room=OuterRef("pk"),
            type=EventType.MESSAGE,
            seq__gt=Coalesce(OuterRef("operator_read_marker__seq"), Value(0)),
            source_channel__category=ChannelCategory.TRANSPORT,
        )
        .exclude(source_channel__channel_type=ChannelType.CONSOLE)
        .order_by()
        .values("room")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rooms = (
        _filtered(user, filters)
        .select_related("assignee", "operator_read_marker")
        .annotate(
            unread_count=Coalesce(Subquery(unread[:1]), Value(0)),
            last_content=Subquery(last_message.values("content")[:1]),
            last_channel_type=Subquery(last_message.values("source_channel__channel_type")[:1]),
            last_channel_name=Subquery(last_message.values("source_channel__name")[:1]),
        )
        .prefetch_related(
            Prefetch(
                "participants",
                queryset=Participant.objects.filter(role=ParticipantRole.MEMBER)
                .select_related("identity", "channel")
                .order_by("joined_at", "id"),
                to_attr="members",
            ),
            Prefetch(
                "bindings",
                queryset=ChannelBinding.objects.filter(category=ChannelCategory.TRANSPORT)
                .select_related("channel")
                .order_by("id"),
                to_attr="transports",
            ),
            "labels",
        )
        .order_by(F("last_activity_at").desc(nulls_last=True), "-created_at")[:limit]
    )
    return [_row(room) for room in rooms]


def _customer(room: Room) -> Participant | None:
    return next((p for p in room.members if p.channel is None or is_customer_channel_type(p.channel.channel_type)), None)


def customer_name(participant: Participant | None, room: Room) -> str:
    """A person's name as the inbox shows it: never a hex id."""
    if participant is not None:
        identity = participant.identity
        return (
            participant.display_name
            or (identity.display_name if identity else "")
            or participant.address
            or f"Visitor {participant.pk[:4]}"
        )
    return room.name or "Unknown visitor"


def _row(room: Room) -> InboxRow:
    customer = _customer(room)
    transports = [b.channel.channel_type for b in room.transports if b.channel.channel_type != ChannelType.CONSOLE]
    content = room.last_content if isinstance(room.last_content, dict) else {}
    preview = " ".join(content_text(content).split())
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    return InboxRow(
        room=room,
        name=customer_name(customer, room),
        address=visible_address(customer),
        channel_type=transports[0] if transports else (customer.channel.channel_type if customer and customer.channel else ""),
        preview=preview,
        preview_by=_preview_by(room),
        unread=room.unread_count,
        labels=list(room.labels.all()),
    )


def _preview_by(room: Room) -> str:
    """The team's own last word is "You: …" in the list, an agent's is its name's."""
    if room.last_channel_type == ChannelType.CONSOLE:
        return "You"
    if room.last_channel_type == ChannelType.AI:
        return room.last_channel_name or "AI"
    return ""


def visible_address(participant: Participant | None) -> str:
    """The address to show for a person: a phone number or an email, not a web-chat session's internal id."""
    if participant is None or not participant.address or participant.address == participant.pk:
        return ""
    if participant.channel is not None and participant.channel.channel_type == ChannelType.WEBSOCKET:
        return ""
    return participant.address if participant.address != participant.display_name else ""


def view_counts(user: AbstractBaseUser, filters: InboxFilters) -> dict[str, int]:
    """How many conversations each of Mine / Unassigned / All holds under the other filters (one query)."""
    counts = _filtered(user, filters, with_view=False).aggregate(
        mine=Count("pk", filter=Q(assignee=user)),
        unassigned=Count("pk", filter=Q(assignee__isnull=True)),
        all=Count("pk"),
    )
    return {view: counts[view] for view in VIEWS}


def filter_choices() -> dict[str, Any]:
    """The values the filter menus offer."""
    agents = ChannelBinding.objects.filter(category=ChannelCategory.INTELLIGENCE).values_list("channel_id", flat=True).distinct()
    return {
        "statuses": ConversationStatus.choices,
        "channels": [(v, label) for v, label in ChannelType.choices if v not in (ChannelType.CONSOLE, ChannelType.AI)],
        "agents": sorted(set(agents)),
        "labels": list(Label.objects.all()),
    }


# --- one conversation ---------------------------------------------------------------------------


def operators() -> list[AbstractBaseUser]:
    """Who a conversation can be assigned to: active staff with the console's operate permission."""
    from rooms.console.actions import OPERATE_PERMISSION

    app_label, codename = OPERATE_PERMISSION.split(".")
    holds = Q(is_superuser=True) | Q(user_permissions__codename=codename, user_permissions__content_type__app_label=app_label)
    holds |= Q(groups__permissions__codename=codename, groups__permissions__content_type__app_label=app_label)
    users = get_user_model().objects.filter(holds, is_active=True, is_staff=True).select_related("presence").distinct()
    return list(users.order_by("username"))


def contact_panel(room: Room) -> dict[str, Any]:
    """The customer of ``room``: participant, identity, addresses on every channel, earlier conversations."""
    members = Participant.objects.filter(room=room, role=ParticipantRole.MEMBER).select_related("identity", "channel")
    room.members = list(members.order_by("joined_at", "id"))
    customer = _customer(room)
    identity: Identity | None = customer.identity if customer else None
    addresses = list(IdentityAddress.objects.filter(identity=identity).order_by("channel_type")) if identity else []
    earlier: list[Room] = []
    if identity is not None:
        earlier = list(
            Room.objects.filter(participants__identity=identity)
            .exclude(pk=room.pk)
            .distinct()
            .order_by(F("last_activity_at").desc(nulls_last=True))[:10]
        )
    return {
        # What the customers have read (the inbox's "Seen" under the team's last message they saw).
        "customer_ids": [p.pk for p in room.members],
        "customer_read_seq": max((p.last_read_seq for p in room.members), default=0),
        "customer": customer,
        "customer_name": customer_name(customer, room),
        "address": visible_address(customer),
        "identity": identity,
        "addresses": addresses,
        "earlier": earlier,
    }


def teams() -> list[Group]:
    return list(Group.objects.order_by("name"))
