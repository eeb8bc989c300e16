"""Engines by provider name, built from a channel's configuration, one per configuration per process.

Models take hundreds of milliseconds and tens of megabytes to load, so an
engine is built the first time its configuration is asked for and shared by
every later caller with the same configuration (the engines are
thread-safe). A new vendor is one entry in ``STT_PROVIDERS`` or
``TTS_PROVIDERS``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import threading
from typing import Any

from voice.speech.base import SpeechConfigError, SpeechToText, TextToSpeech

# The defaults, chosen by the measurements of bench/speech.py (2 cores): Whisper tiny.en makes
# the fewest word errors (1 % on Piper's voice, 7.5 % on espeak-ng's; PocketSphinx 5–12 % and
# 70 %) and, encoding a short utterance at its own length, gives its text ~0.1–0.3 s after the
# end of it (PocketSphinx ~0.1–0.2 s, but its errors would reach the agent). Piper's speech is
# the one both recognizers understand best (a proxy for how easily a person does); its first
# audio comes ~35 ms after the text when the reply opens with a short sentence, and it speaks
# ~19x faster than real time.
DEFAULT_STT_CONFIG: dict[str, Any] = {"provider": "whisper", "model": "tiny.en"}
DEFAULT_TTS_CONFIG: dict[str, Any] = {"provider": "piper", "voice": "en_US-joe-medium"}


# Engines are imported when first asked for: a process that only speaks through
# a cloud vendor never loads ONNX Runtime or CTranslate2. "module:class".
STT_PROVIDERS: dict[str, str] = {
    "whisper": "voice.speech.stt_whisper:WhisperSTT",
    "pocketsphinx": "voice.speech.stt_pocketsphinx:PocketSphinxSTT",
    "openai": "voice.speech.stt_openai:OpenAISTT",
    "deepgram": "voice.speech.stt_deepgram:DeepgramSTT",
}
TTS_PROVIDERS: dict[str, str] = {
    "piper": "voice.speech.tts_piper:PiperTTS",
    "espeak": "voice.speech.tts_espeak:ESpeakTTS",
    "openai": "voice.speech.tts_openai:OpenAITTS",
    "elevenlabs": "voice.speech.tts_elevenlabs:ElevenLabsTTS",
}

_engines: dict[tuple[str, str], Any] = {}
_building: dict[tuple[str, str], threading.Lock] = {}
_lock = threading.Lock()


def stt_from_config(config: dict[str, Any]) -> SpeechToText:
    """The speech-to-text engine for ``config``: ``{"provider": name, ...options}``.

    Providers and their options (cloud ones also take ``api_key``, ``base_url``
    and ``timeout``):

    - ``whisper``: ``model`` (``"tiny.en"`` or a CTranslate2 model directory),
      ``language``, ``compute_type``, ``cpu_threads``, ``num_workers``, ``beam_size``, ``vad_filter``,
      ``context`` (``"fit"``: encode the utterance at its own length, the default; ``"full"``: a 30 s window);
    - ``pocketsphinx``: ``hmm``, ``lm``, ``dict`` (paths; the packaged US English
      model by default), ``language`` (of that model), ``max_decoders``, ``acquire_timeout``;
    - ``openai``: ``model``, ``language``, ``prompt``, ``logprobs``;
    - ``deepgram``: ``model``, ``language``, ``interim_results``, ``smart_format``, ``options``.

    A config without ``provider`` means ``DEFAULT_STT_CONFIG`` (its options
    merged under the given ones). The engine is built once per distinct
    config and shared; ``SpeechConfigError`` when the config cannot work.
    """
    return _engine("stt", config, DEFAULT_STT_CONFIG, STT_PROVIDERS)


def tts_from_config(config: dict[str, Any]) -> TextToSpeech:
    """The text-to-speech engine for ``config``: ``{"provider": name, "voice": ..., ...options}``.

    - ``piper``: ``voice`` (``"en_US-joe-medium"`` or a path to a ``.onnx``), ``length_scale``, ``threads``;
    - ``espeak``: ``voice`` (an espeak-ng voice, ``"en-us"``), ``rate`` (words per minute), ``pitch``;
    - ``openai``: ``voice``, ``model``, ``instructions``, ``speed``;
    - ``elevenlabs``: ``voice`` (a voice id), ``model``, ``sample_rate``, ``voice_settings``, ``language``.

    Same sharing and defaults as ``stt_from_config``.
    """
    return _engine("tts", config, DEFAULT_TTS_CONFIG, TTS_PROVIDERS)


def agent_tts_config(channel_tts: dict[str, Any], voice: str) -> dict[str, Any]:
    """The TTS config an agent speaks with on a channel: the channel's, in the agent's ``voice``.

    ``voice`` is the agent's setting: empty for the channel's own voice, a
    voice of the channel's engine (``"en-gb"``), or ``"<provider>:<voice>"``
    for another engine (``"espeak:en-gb"``); a provider's key and base URL
    carry over only to the same provider.
    """
    voice = voice.strip()
    if not voice:
        return channel_tts
    channel_provider = channel_tts.get("provider") or DEFAULT_TTS_CONFIG["provider"]
    provider, sep, name = voice.partition(":")
    if sep and provider in TTS_PROVIDERS and name:
        if provider != channel_provider:
            return {"provider": provider, "voice": name}
        voice = name
    return {**channel_tts, "provider": channel_provider, "voice": voice}


def _engine(kind: str, config: dict[str, Any], default: dict[str, Any], providers: dict[str, str]) -> Any:
    if not config.get("provider"):
        config = {**default, **config, "provider": default["provider"]}
    options = {k: v for k, v in config.items() if k != "provider"}
    provider = config["provider"]
    target = providers.get(provider)
    if target is None:
        raise SpeechConfigError(f"no {kind.upper()} provider {provider!r} (known: {', '.join(sorted(providers))})")
    key = (kind, _fingerprint(config))
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        building = _building.setdefault(key, threading.Lock())
    # One load per config even when many callers ask at once; loads of
    # different configs do not wait for each other.
    with building:
        engine = _engines.get(key)
        if engine is None:
            module, _, name = target.partition(":")
            engine_class = getattr(importlib.import_module(module), name)
            try:
                inspect.signature(engine_class).bind(**options)
            except TypeError as exc:
                raise SpeechConfigError(f"{kind.upper()} provider {provider!r}: {exc}") from exc
            engine = _engines[key] = engine_class(**options)
    return engine


def _fingerprint(config: dict[str, Any]) -> str:
    # A digest, not the config itself, keys the cache: the config holds the API key.
    raw = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def clear_engines() -> None:
    """Forget every engine built so far (tests; a model replaced on disk)."""
    with _lock:
        _engines.clear()
        _building.clear()
