"""Twilio's documented payloads (fixtures/twilio), with the ids and audio of a test's own call put in."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from voice.audio import ulaw_decode, ulaw_encode

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "twilio"


def voice_call_form() -> dict[str, str]:
    """Twilio's incoming-call webhook form (fixtures/twilio/voice_call.json)."""
    return copy.deepcopy(json.loads((FIXTURES / "voice_call.json").read_text())["form"])


def stream_message(kind: str, *, stream_sid: str, direction: str = "from_twilio") -> dict[str, Any]:
    """A Media Streams message of ``kind`` as Twilio's documentation shows it, for ``stream_sid``."""
    message = copy.deepcopy(json.loads((FIXTURES / "media_streams.json").read_text())[direction][kind])
    message["streamSid"] = stream_sid
    if kind == "start":
        message["start"]["streamSid"] = stream_sid
    return message


def ulaw_payload(pcm8k: np.ndarray) -> str:
    """Int16 samples at 8 kHz as a ``media`` payload: base64 μ-law."""
    return base64.b64encode(ulaw_encode(pcm8k.astype("<i2").tobytes())).decode("ascii")


def payload_samples(payload: str) -> np.ndarray:
    """A ``media`` payload back to int16 samples at 8 kHz."""
    return np.frombuffer(ulaw_decode(base64.b64decode(payload)), dtype="<i2")
