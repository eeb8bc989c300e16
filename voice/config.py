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


@dataclass(frozen=True)
class VoiceSettings:
    stt: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_STT_CONFIG))
    tts: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TTS_CONFIG))
    # Which detector decides speech vs silence, and the VAD's timings (voice.audio.VADConfig).
    detector: str = "webrtc"
    min_speech_ms: int = 200
    # Transcription starts after this much silence (WebRTC's detector adds ~70–110 ms of its own
    # overhang); the turn ends when the transcript is ready and the caller is still quiet, so a
    # pause of ~350 ms ends a turn. Median first audio (bench/voice.py): 427 ms at 120, 500 at 150.
    probable_end_ms: int = 120
    end_silence_ms: int = 600
    # How the caller's speech during the agent's playback is taken (the seeds' strategies).
    interruption: str = "confirmed"
    # "confirmed": speech must last this long before it interrupts.
    interrupt_min_speech_ms: int = 300
    # An utterance that ends mid-sentence waits this much longer for the rest.
    incomplete_turn_wait_ms: int = 1500
    # Stages the audio's source does itself (the browser's echo cancellation, noise suppression, gain).
    native: frozenset[str] = frozenset()
    denoise: bool = True
    agc: bool = True
    record: bool = False


def _int(raw: Any, default: int, low: int, high: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return default
    return min(max(value, low), high)


def voice_settings(config: dict[str, Any] | None) -> VoiceSettings:
    """The settings in a channel's config (``config["voice"]``); unknown or bad values fall back to defaults."""
    raw = (config or {}).get("voice") or {}
    if isinstance(raw, str):  # as typed into the admin's channel form
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = {}
    if not isinstance(raw, dict):
        raw = {}
    defaults = VoiceSettings()
    interruption = raw.get("interruption", defaults.interruption)
    detector = raw.get("detector", defaults.detector)
    native = raw.get("native", [])
    return VoiceSettings(
        stt=dict(raw["stt"]) if isinstance(raw.get("stt"), dict) else defaults.stt,
        tts=dict(raw["tts"]) if isinstance(raw.get("tts"), dict) else defaults.tts,
        detector=detector if detector in SPEECH_DETECTORS else defaults.detector,
        min_speech_ms=_int(raw.get("min_speech_ms"), defaults.min_speech_ms, 20, 5000),
        probable_end_ms=_int(raw.get("probable_end_ms"), defaults.probable_end_ms, 60, 5000),
        end_silence_ms=_int(raw.get("end_silence_ms"), defaults.end_silence_ms, 100, 10000),
        interruption=interruption if interruption in INTERRUPTION_STRATEGIES else defaults.interruption,
        interrupt_min_speech_ms=_int(raw.get("interrupt_min_speech_ms"), defaults.interrupt_min_speech_ms, 0, 10000),
        incomplete_turn_wait_ms=_int(raw.get("incomplete_turn_wait_ms"), defaults.incomplete_turn_wait_ms, 0, 10000),
        native=frozenset(str(n) for n in native) if isinstance(native, list) else frozenset(),
        denoise=bool(raw.get("denoise", defaults.denoise)),
        agc=bool(raw.get("agc", defaults.agc)),
        record=bool(raw.get("record", defaults.record)),
    )
