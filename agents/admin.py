"""Operator console for agents, pipelines and their stages, MCP servers and generations."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from agents.models import Agent, Generation, MCPServer, Pipeline, PipelineStage
from agents.services import agent_save
from agents.skills import registry as skill_registry
from agents.tools import registered_tools


class AgentForm(forms.ModelForm):
    """API keys are write-only: stored encrypted on the agent's channel, never shown back."""

    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current key (or to use the provider's environment variable).",
    )
    fallback_api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Key for the fallback provider, if it needs one.",
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "role",
            "description",
            "scope",
            "enabled",
            "system_prompt",
            "greeting",
            "language",
            "voice",
            "provider",
            "model",
            "base_url",
            "temperature",
            "max_tokens",
            "vision",
            "provider_config",
            "timeout_seconds",
            "max_retries",
            "retry_base_delay_seconds",
            "fallback_provider",
            "fallback_model",
            "fallback_base_url",
            "tools",
            "skills",
            "mcp_servers",
            "max_tool_rounds",
            "tool_loop_timeout_seconds",
            "tool_result_max_chars",
            "memory_window",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "tools" in self.fields:
            self.fields["tools"].help_text = "JSON list. Registered tools: " + ", ".join(registered_tools())
        if "skills" in self.fields:
            self.fields["skills"].help_text = "JSON list. Registered skills: " + (", ".join(skill_registry.names()) or "none")
        if self.instance and self.instance.pk and "id" in self.fields:
            self.fields["id"].disabled = True

    def clean_tools(self) -> list:
        value = self.cleaned_data.get("tools") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError("a JSON list of tool names is expected")
        unknown = sorted(set(value) - set(registered_tools()))
        if unknown:
            raise forms.ValidationError(f"unknown tools: {', '.join(unknown)}")
        return value

    def clean_skills(self) -> list:
        value = self.cleaned_data.get("skills") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError("a JSON list of skill names is expected")
        unknown = sorted(set(value) - set(skill_registry.names()))
        if unknown:
            raise forms.ValidationError(f"unknown skills: {', '.join(unknown)}")
        return value


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ["id", "name", "role", "provider", "model", "fallback_provider", "language", "enabled"]
    list_filter = ["provider", "enabled"]
    search_fields = ["id", "name", "role", "description"]
    filter_horizontal = ["mcp_servers"]
    fieldsets = [
        (None, {"fields": ["id", "name", "role", "description", "scope", "enabled"]}),
        ("Prompt", {"fields": ["system_prompt", "greeting", "language", "voice"]}),
        (
            "Model",
            {"fields": ["provider", "model", "base_url", "api_key", "temperature", "max_tokens", "vision", "provider_config"]},
        ),
        (
            "Resilience",
            {
                "fields": [
                    "timeout_seconds",
                    "max_retries",
                    "retry_base_delay_seconds",
                    "fallback_provider",
                    "fallback_model",
                    "fallback_base_url",
                    "fallback_api_key",
                ]
            },
        ),
        (
            "Tools and memory",
            {
                "fields": [
                    "tools",
                    "skills",
                    "mcp_servers",
                    "max_tool_rounds",
                    "tool_loop_timeout_seconds",
                    "tool_result_max_chars",
                    "memory_window",
                ]
            },
        ),
    ]

    def save_model(self, request, obj: Agent, form: AgentForm, change: bool) -> None:
        agent_save(
            obj,
            api_key=form.cleaned_data.get("api_key") or None,
            fallback_api_key=form.cleaned_data.get("fallback_api_key") or None,
        )


class PipelineStageInline(admin.TabularInline):
    model = PipelineStage
    extra = 1
    fields = ["order", "phase", "agent", "next_phase", "intents", "channel_types", "can_handoff_to"]
    autocomplete_fields = ["agent"]


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "stage_list", "allow_human_handoff", "greet_on_handoff", "enabled"]
    list_filter = ["enabled"]
    search_fields = ["id", "name"]
    inlines = [PipelineStageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("stages")

    @admin.display(description="stages")
    def stage_list(self, obj: Pipeline) -> str:
        return " → ".join(f"{s.phase} ({s.agent_id})" for s in obj.stages.all())


@admin.register(MCPServer)
class MCPServerAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "url", "enabled"]
    search_fields = ["id", "name", "url"]


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "room", "agent", "kind", "status", "provider_used", "rounds", "attempts"]
    list_filter = ["status", "kind", "agent"]
    search_fields = ["id", "room__id", "agent__id"]
    list_select_related = ["room", "agent"]
    readonly_fields = [f.name for f in Generation._meta.fields]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
