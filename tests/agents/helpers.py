"""Set-up for the agent tests: agents through the public service, a chat room, a recorder of socket frames."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from agents.models import Agent, Generation, Pipeline, PipelineStage
from agents.services import agent_save
from rooms.enums import ChannelType
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import Room, RoomEvent
from rooms.realtime import broadcast as realtime
from tests.support import make_channel


def make_agent(agent_id: str, **fields: Any) -> Agent:
    api_key = fields.pop("api_key", None)
    fields.setdefault("name", agent_id.title())
    fields.setdefault("retry_base_delay_seconds", 0.01)
    return agent_save(Agent(id=agent_id, **fields), api_key=api_key)


def make_pipeline(pipeline_id: str, stages: list[tuple[str, str, str]], **fields: Any) -> Pipeline:
    """``stages``: (phase, agent_id, next_phase)."""
    pipeline = Pipeline.objects.create(id=pipeline_id, **fields)
    for order, (phase, agent_id, next_phase) in enumerate(stages):
        PipelineStage.objects.create(pipeline=pipeline, order=order, phase=phase, agent_id=agent_id, next_phase=next_phase)
    return pipeline


def chat_channel(*agent_ids: str, channel_id: str = "web") -> None:
    """A web-chat-like channel (sockets, no outbox) that binds ``agent_ids`` into every room it opens."""
    make_channel(channel_id, channel_type=ChannelType.WEBSOCKET, provider="", config={"attach_on_create": list(agent_ids)})


def say(text: str, *, sender: str = "alice", channel_id: str = "web", **fields: Any) -> InboundResult:
    return process_inbound(InboundMessage(channel_id=channel_id, sender=sender, text=text, **fields))


def agent_replies(room_id: str, agent_id: str | None = None) -> list[RoomEvent]:
    qs = RoomEvent.objects.filter(room_id=room_id, source_channel__channel_type=ChannelType.AI).order_by("seq")
    if agent_id:
        qs = qs.filter(source_channel_id=agent_id)
    return list(qs)


def last_generation(room_id: str) -> Generation:
    return Generation.objects.filter(room_id=room_id).order_by("-created_at").first()


def state_of(room_id: str) -> dict[str, Any]:
    return Room.objects.get(pk=room_id).conversation_state


class FrameRecorder:
    """A room's frames as a socket on this process receives them (the room's channel-layer group).

    Runs an event loop in a thread, as Daphne does, and binds it as the loop
    that serves sockets, so frames published from sync code reach it.
    """

    def __init__(self, room_id: str) -> None:
        self.frames: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.room_id = room_id
        asyncio.run_coroutine_threadsafe(self._join(), self.loop).result(10)

    async def _join(self) -> None:
        realtime.bind_server_loop(self.loop)
        self.hub = await realtime.room_hub_join(self.room_id, self)

    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        self.frames.append(json.loads(out["text"]))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind or f.get("kind") == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of_type(kind)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {kind} frame(s); got {[f['type'] for f in self.frames]}")
            time.sleep(0.005)
        return self.of_type(kind)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(realtime.room_hub_leave(self.hub, self), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def open_room(*agent_ids: str, sender: str = "alice", channel_id: str = "web", ai_config: dict | None = None) -> str:
    """A room with ``sender`` on the chat channel and ``agent_ids`` bound, through the lifecycle services."""
    from rooms.models import Channel
    from rooms.services import channel_attach, room_create

    if not Channel.objects.filter(pk=channel_id).exists():
        make_channel(channel_id, channel_type=ChannelType.WEBSOCKET, provider="")
    room = room_create(ai_config=ai_config)
    channel_attach(room_id=room.id, channel_id=channel_id, address=sender, display_name=sender.title())
    for agent_id in agent_ids:
        channel_attach(room_id=room.id, channel_id=agent_id)
    return room.id


def say_in(room_id: str, text: str, *, sender: str = "alice", channel_id: str = "web", **fields: Any) -> InboundResult:
    return process_inbound(InboundMessage(channel_id=channel_id, room_id=room_id, sender=sender, text=text, **fields))
