"""AI agents, the pipelines that chain them, MCP tool servers and generations.

An ``Agent`` is bound to rooms as an intelligence channel: each agent owns a
``rooms.Channel`` with the same id (type ``ai``, category ``intelligence``),
created by ``agents.services.agent_save``. A ``Generation`` is the outbox row
of one reply: the row first, the Celery task second, so a task that dies is
retried from its row and a repeat never posts twice.
"""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from rooms.models import Channel, Room, RoomEvent


def _new_id() -> str:
    return uuid.uuid4().hex


class ProviderName(models.TextChoices):
    SCRIPTED = "scripted", "Scripted (offline demo, no model)"
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama…)"
    GEMINI = "gemini", "Google Gemini"
    MISTRAL = "mistral", "Mistral"


class MCPServer(models.Model):
    """A Model Context Protocol server whose tools agents may call (streamable HTTP transport)."""

    id = models.SlugField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200, blank=True)
    url = models.CharField(max_length=500, help_text="Streamable HTTP endpoint, e.g. http://127.0.0.1:3000/mcp")
    timeout_seconds = models.FloatField(default=30.0, validators=[MinValueValidator(0.1)])
    # Only these tools are offered (empty: every tool the server lists).
    allowed_tools = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "MCP server"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id


class Agent(models.Model):
    """An AI agent as the operator configures it; its id is also its channel's id."""

    id = models.SlugField(primary_key=True, max_length=64)
    channel = models.OneToOneField(Channel, on_delete=models.CASCADE, related_name="agent", editable=False)
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=200, blank=True, help_text="e.g. Triage receptionist")
    description = models.TextField(blank=True, help_text="What this agent does; other agents see it when handing off.")
    scope = models.TextField(blank=True, help_text="What it may talk about, e.g. 'Billing questions only'.")
    system_prompt = models.TextField(blank=True)
    provider = models.CharField(max_length=32, choices=ProviderName.choices, default=ProviderName.SCRIPTED)
    model = models.CharField(max_length=200, blank=True)
    base_url = models.CharField(max_length=500, blank=True, help_text="API base URL; empty: the provider's default or env.")
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(default=1024)
    language = models.CharField(max_length=64, blank=True, help_text="Default reply language; a room's language wins.")
    voice = models.CharField(
        max_length=200,
        blank=True,
        help_text="How it sounds on a call: empty for the voice channel's own voice, a voice of that channel's engine, "
        "or 'engine:voice' (e.g. 'espeak:en-gb', 'piper:en_US-joe-medium', 'openai:alloy').",
    )
    greeting = models.TextField(blank=True, help_text="Instruction for the greeting this agent says when it takes over.")
    tools = models.JSONField(default=list, blank=True, help_text="Names of registered tools this agent may call.")
    skills = models.JSONField(default=list, blank=True, help_text="Names of registered skills this agent may activate.")
    mcp_servers = models.ManyToManyField(MCPServer, blank=True, related_name="agents")
    memory_window = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    vision = models.BooleanField(default=False, help_text="Send images of the conversation to the model.")
    fallback_provider = models.CharField(max_length=32, choices=ProviderName.choices, blank=True)
    fallback_model = models.CharField(max_length=200, blank=True)
    fallback_base_url = models.CharField(max_length=500, blank=True)
    timeout_seconds = models.FloatField(default=60.0, validators=[MinValueValidator(0.05)])
    max_retries = models.PositiveSmallIntegerField(default=2)
    retry_base_delay_seconds = models.FloatField(default=0.5, validators=[MinValueValidator(0.0)])
    max_tool_rounds = models.PositiveSmallIntegerField(default=8, validators=[MinValueValidator(1)])
    tool_loop_timeout_seconds = models.FloatField(default=120.0, validators=[MinValueValidator(0.1)])
    tool_result_max_chars = models.PositiveIntegerField(default=16384, validators=[MinValueValidator(200)])
    # Provider extras: the scripted provider's rules and delays, request options.
    provider_config = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id

    @property
    def display_name(self) -> str:
        return self.name or self.id


class Pipeline(models.Model):
    """Stages of a conversation, each served by one agent (triage → handling …)."""

    id = models.SlugField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    allow_human_handoff = models.BooleanField(default=True, help_text="Agents may hand the room to a human operator.")
    greet_on_handoff = models.BooleanField(default=True, help_text="The new agent greets the user after a handoff.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name or self.id


class PipelineStage(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stages")
    order = models.PositiveSmallIntegerField(default=0)
    phase = models.SlugField(max_length=64)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="stages")
    next_phase = models.SlugField(max_length=64, blank=True)
    # Routing rules for a room without an active agent: this stage takes a
    # message whose intent (event.metadata["intent"] or a keyword in its text)
    # and channel type match. Empty lists match anything.
    intents = models.JSONField(default=list, blank=True)
    channel_types = models.JSONField(default=list, blank=True)
    # Extra handoff targets besides the next stage: agent ids or "human".
    can_handoff_to = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["pipeline", "order", "id"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "phase"], name="uniq_stage_pipeline_phase")]

    def __str__(self) -> str:
        return f"{self.pipeline_id}:{self.phase} → {self.agent_id}"


class GenerationStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    # A message that arrived while this agent's tool loop ran: handed to that loop.
    STEERING = "steering"
    ABSORBED = "absorbed"


class GenerationKind(models.TextChoices):
    REPLY = "reply"
    GREETING = "greeting"


class Generation(models.Model):
    """One AI reply owed to a room: the outbox row its task executes."""

    id = models.CharField(primary_key=True, max_length=64, default=_new_id, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="generations")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="generations")
    trigger_event = models.ForeignKey(RoomEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=GenerationKind.choices, default=GenerationKind.REPLY)
    status = models.CharField(max_length=16, choices=GenerationStatus.choices, default=GenerationStatus.PENDING, db_index=True)
    steer_target = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="steering")
    attempts = models.PositiveSmallIntegerField(default=0)
    reply_event = models.ForeignKey(RoomEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    provider_used = models.CharField(max_length=64, blank=True)
    rounds = models.PositiveSmallIntegerField(default=0)
    usage = models.JSONField(default=dict, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["trigger_event", "agent"], condition=Q(trigger_event__isnull=False), name="uniq_generation_event_agent"
            )
        ]
        indexes = [models.Index(fields=["room", "agent", "status"])]

    def __str__(self) -> str:
        return f"{self.agent_id}@{self.room_id} {self.kind} ({self.status})"
