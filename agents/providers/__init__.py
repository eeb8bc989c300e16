"""AI provider adapters, chosen by name from an agent's configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from agents.providers.base import AIProvider, ProviderError

# name -> (env var of the API key, env var of the base URL)
_ENV: dict[str, tuple[str, str]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "openai_compatible": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    "gemini": ("GEMINI_API_KEY", "GEMINI_BASE_URL"),
    "mistral": ("MISTRAL_API_KEY", "MISTRAL_BASE_URL"),
}

ProviderFactory = Callable[..., AIProvider]


def _openai(**kw: Any) -> AIProvider:
    from agents.providers.openai_chat import OpenAIChatProvider

    return OpenAIChatProvider(
        model=kw["model"] or "gpt-4o-mini", api_key=kw["api_key"], base_url=kw["base_url"], timeout=kw["timeout"], name=kw["name"]
    )


def _anthropic(**kw: Any) -> AIProvider:
    from agents.providers.anthropic_messages import AnthropicMessagesProvider

    return AnthropicMessagesProvider(
        model=kw["model"] or "claude-sonnet-4-5",
        api_key=kw["api_key"],
        base_url=kw["base_url"],
        timeout=kw["timeout"],
        name=kw["name"],
    )


def _gemini(**kw: Any) -> AIProvider:
    from agents.providers.gemini import GeminiProvider

    return GeminiProvider(
        model=kw["model"] or "gemini-2.5-flash", api_key=kw["api_key"], base_url=kw["base_url"], timeout=kw["timeout"]
    )


def _mistral(**kw: Any) -> AIProvider:
    from agents.providers.mistral import MistralProvider

    return MistralProvider(
        model=kw["model"] or "mistral-small-latest", api_key=kw["api_key"], base_url=kw["base_url"], timeout=kw["timeout"]
    )


def _scripted(**kw: Any) -> AIProvider:
    from agents.providers.scripted import ScriptedProvider

    return ScriptedProvider(agent_name=kw["agent_name"], config=kw["config"])


_FACTORIES: dict[str, ProviderFactory] = {
    "openai": _openai,
    "openai_compatible": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "mistral": _mistral,
    "scripted": _scripted,
}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Add (or replace) a provider adapter under ``name``."""
    _FACTORIES[name] = factory


def build_provider(
    name: str,
    *,
    model: str = "",
    base_url: str = "",
    api_key: str | None = None,
    timeout: float = 60.0,
    agent_name: str = "assistant",
    config: dict[str, Any] | None = None,
) -> AIProvider:
    """The adapter ``name`` configured; the key and base URL fall back to the provider's env variables."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ProviderError(f"unknown AI provider '{name}'", retryable=False)
    key_env, url_env = _ENV.get(name, ("", ""))
    api_key = api_key or (os.environ.get(key_env, "") if key_env else "")
    base_url = base_url or (os.environ.get(url_env, "") if url_env else "")
    return factory(
        name=name,
        model=model,
        base_url=base_url or None,
        api_key=api_key,
        timeout=timeout,
        agent_name=agent_name,
        config=config or {},
    )
