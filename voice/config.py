"""A voice channel's settings, read from its ``config["voice"]`` (set in the admin or with ``add_channel``).

Everything has a default that works offline, so a channel with no voice
settings at all (the seeded ``voice`` channel) talks with Whisper and Piper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from voice.speech import DEFAULT_STT_CONFIG, DEFAULT_TTS_CONFIG

INTERRUPTION_STRATEGIES = ("immediate", "confirmed", "semantic", "disabled")
SPEECH_DETECTORS = ("webrtc", "silero", "energy")
NATIVE_STAGES = ("aec", "agc", "denoise")
OFFLINE_STT = ("whisper", "pocketsphinx")
# The timings an operator may set, and their bounds (a value outside is refused by the admin,
# and clamped when read).
_MS_RANGES: dict[str, tuple[int, int]] = {
    "min_speech_ms": (20, 5000),
    "probable_end_ms": (60, 5000),
    "end_silence_ms": (100, 10000),
    "interrupt_min_speech_ms": (0, 10000),
    "incomplete_turn_wait_ms": (0, 10000),
    "partial_interval_ms": (0, 10000),
}
_CHOICES: dict[str, tuple[str, ...]] = {"detector": SPEECH_DETECTORS, "interruption": INTERRUPTION_STRATEGIES}
_SWITCHES = ("denoise", "agc", "record", "diarization")


@dataclass(frozen=True)
class VoiceSettings:
    stt: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_STT_CONFIG))
    tts: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TTS_CONFIG))
    # Which detector decides speech vs silence, and the VAD's timings (voice.audio.VADConfig).
    detector: str = "webrtc"
    min_speech_ms: int = 200
    # Transcription starts after this much silence (WebRTC's detector adds ~70–110 ms of its own
    # overhang); the turn ends when the transcript is ready and the caller is still quiet, so a
    # pause of ~350 ms ends a turn. Median first audio (bench/voice.py, README): 438 ms at 120, 500 at 150.
    probable_end_ms: int = 120
    end_silence_ms: int = 600
    # How the caller's speech during the agent's playback is taken (the seeds' strategies).
    interruption: str = "confirmed"
    # "confirmed": speech must last this long before it interrupts.
    interrupt_min_speech_ms: int = 300
    # An utterance that ends mid-sentence waits this much longer for the rest.
    incomplete_turn_wait_ms: int = 1500
    # While the caller speaks, what they said so far is transcribed every this much speech
    # (partial_transcript, ON_PARTIAL_TRANSCRIPTION); 0: never. Only the offline engines do it by
    # default: a cloud engine would be paid for each partial.
    partial_interval_ms: int = 1000
    # Stages the audio's source does itself (the browser's echo cancellation, noise suppression, gain).
    native: frozenset[str] = frozenset()
    denoise: bool = True
    agc: bool = True
    record: bool = False
    # Who is speaking, utterance by utterance (ON_SPEAKER_CHANGE); needs `make diarization`.
    diarization: bool = False


def _int(raw: Any, default: int, low: int, high: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return default
    return min(max(value, low), high)


def _raw_settings(config: dict[str, Any] | None) -> Any:
    """``config["voice"]``, parsed when it was typed into the admin as JSON text; {} when unset."""
    raw = (config or {}).get("voice") or {}
    if isinstance(raw, str):
        return json.loads(raw)
    return raw


def voice_settings_errors(config: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What is wrong with a channel's voice settings, as ``("voice", message)`` pairs; empty when they work.

    The admin refuses to save what this finds (``voice_settings`` would
    quietly use defaults instead).
    """
    from voice.speech.registry import STT_PROVIDERS, TTS_PROVIDERS

    try:
        raw = _raw_settings(config)
    except ValueError as exc:
        return [("voice", f"not JSON: {exc}")]
    if not isinstance(raw, dict):
        return [("voice", "a JSON object is expected")]
    problems = []
    known = {*_MS_RANGES, *_CHOICES, *_SWITCHES, "stt", "tts", "native"}
    problems += [f"unknown setting {key!r}" for key in sorted(set(raw) - known)]
    for key, (low, high) in _MS_RANGES.items():
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            problems.append(f"{key} must be a whole number of ms from {low} to {high}")
    for key, choices in _CHOICES.items():
        if key in raw and raw[key] not in choices:
            problems.append(f"{key} must be one of {', '.join(choices)}")
    problems += [f"{key} must be true or false" for key in _SWITCHES if key in raw and not isinstance(raw[key], bool)]
    native = raw.get("native", [])
    if not isinstance(native, list) or any(n not in NATIVE_STAGES for n in native):
        problems.append(f"native must be a list of {', '.join(NATIVE_STAGES)}")
    for key, providers in (("stt", STT_PROVIDERS), ("tts", TTS_PROVIDERS)):
        engine = raw.get(key, {})
        if not isinstance(engine, dict):
            problems.append(f'{key} must be an object such as {{"provider": "{next(iter(providers))}"}}')
        elif engine.get("provider") and engine["provider"] not in providers:
            problems.append(f"{key} provider must be one of {', '.join(providers)}")
    if raw.get("diarization") is True:
        from voice.audio.diarization import diarization_available

        if not diarization_available():
            problems.append("diarization needs Resemblyzer and PyTorch, not installed here: run `make diarization`")
    return [("voice", problem) for problem in problems]


def voice_settings(config: dict[str, Any] | None) -> VoiceSettings:
    """The settings in a channel's config (``config["voice"]``); unknown or bad values fall back to defaults."""
    try:
        raw = _raw_settings(config)
    except ValueError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    defaults = VoiceSettings()
    if isinstance(raw.get("stt"), dict) and raw["stt"].get("provider") not in (None, "", *OFFLINE_STT):
        defaults = VoiceSettings(partial_interval_ms=0)
    interruption = raw.get("interruption", defaults.interruption)
    detector = raw.get("detector", defaults.detector)
    native = raw.get("native", [])
    return VoiceSettings(
        stt=dict(raw["stt"]) if isinstance(raw.get("stt"), dict) else defaults.stt,
        tts=dict(raw["tts"]) if isinstance(raw.get("tts"), dict) else defaults.tts,
        detector=detector if detector in SPEECH_DETECTORS else defaults.detector,
        interruption=interruption if interruption in INTERRUPTION_STRATEGIES else defaults.interruption,
        **{key: _int(raw.get(key), getattr(defaults, key), low, high) for key, (low, high) in _MS_RANGES.items()},
        native=frozenset(str(n) for n in native) if isinstance(native, list) else frozenset(),
        denoise=bool(raw.get("denoise", defaults.denoise)),
        agc=bool(raw.get("agc", defaults.agc)),
        record=bool(raw.get("record", defaults.record)),
        diarization=bool(raw.get("diarization", defaults.diarization)),
    )
