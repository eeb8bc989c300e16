"""Set-up for the console tests: users in the console's groups, rooms through the public services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from rooms.console.actions import OPERATOR_GROUP, VIEWER_GROUP, console_groups_ensure
from rooms.enums import ChannelType
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import AuditEntry, ChannelBinding, Delivery, Room, RoomEvent, RoomReadMarker
from rooms.services import channel_attach, room_create
from tests.support import make_channel

PASSWORD = "a-long-test-password-1"


def make_user(username: str, *, group: str | None = None, staff: bool = True, superuser: bool = False) -> AbstractBaseUser:
    """A user in the console group ``group`` (after ``ensure_console_groups``)."""
    console_groups_ensure()
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = model.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=staff)
    if group:
        from django.contrib.auth.models import Group

        user.groups.add(Group.objects.get(name=group))
    user.first_name = username.title()
    user.save(update_fields=["first_name"])
    return user


def operator(username: str = "olga") -> AbstractBaseUser:
    return make_user(username, group=OPERATOR_GROUP)


def viewer(username: str = "victor") -> AbstractBaseUser:
    return make_user(username, group=VIEWER_GROUP)


def logged_in(user: AbstractBaseUser) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf_post(client: Client, path: str, data: dict[str, Any] | None = None, **extra: Any):
    """POST as the browser does: with the CSRF cookie and the form's token."""
    client.get("/admin/login/", follow=True)  # a form page: sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    return client.post(path, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


def sms_and_web_channels() -> None:
    make_channel("sms", channel_type=ChannelType.SMS, provider="http", config={"url": "http://127.0.0.1:9/never"})
    make_channel("web", channel_type=ChannelType.WEBSOCKET, provider="")


def chat_room(name: str = "", *, sender: str = "alice", sms: str | None = "+15550001111") -> Room:
    """A room with a web-chat user and (optionally) an SMS recipient bound, through the lifecycle services."""
    room = room_create(name=name)
    channel_attach(room_id=room.id, channel_id="web", address=sender, display_name=sender.title())
    if sms:
        channel_attach(room_id=room.id, channel_id="sms", address=sms, display_name=f"SMS {sms}")
    return Room.objects.get(pk=room.id)


def say(room_id: str, text: str, *, sender: str = "alice", channel_id: str = "web", **fields: Any) -> InboundResult:
    return process_inbound(InboundMessage(channel_id=channel_id, room_id=room_id, sender=sender, text=text, **fields))


def snapshot(room_id: str) -> dict[str, Any]:
    """Everything a console action could change in a room: to prove a refused one changed nothing."""
    room = Room.objects.get(pk=room_id)
    return {
        "room": (room.status, room.last_seq, room.conversation_state),
        "events": list(RoomEvent.objects.filter(room_id=room_id).values_list("seq", "type", "visibility")),
        "bindings": list(ChannelBinding.objects.filter(room_id=room_id).order_by("id").values_list("id", "access", "muted")),
        "deliveries": list(Delivery.objects.filter(event__room_id=room_id).order_by("id").values_list("id", "status")),
        "audit": AuditEntry.objects.count(),
        "marker": list(RoomReadMarker.objects.filter(room_id=room_id).values_list("seq", flat=True)),
    }
