"""Who is speaking: each utterance of a call matched against the voices heard so far on it.

The voice of an utterance is a 256-number embedding from Resemblyzer's
speaker encoder (a GE2E model whose weights ship in its wheel; it runs on
PyTorch's CPU build). Utterances whose voice is close enough (cosine
similarity at least ``threshold``) to a speaker already heard on the call are
that speaker — whose voice print becomes the mean of theirs — else a new
speaker. Measured on espeak-ng voices: the same voice across sentences 0.91–0.95,
another voice 0.67–0.72, hence the default 0.8.

Resemblyzer and PyTorch are an optional install (``make diarization``: about
1.4 GB): a channel turns diarization on with ``"diarization": true`` in its
voice settings. An embedding costs ~25–45 ms per utterance on one core; the
first in a process also loads the model and librosa's compiled kernels
(~3 s, ~30 s the very first time on a machine).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice.speech.pcm import duration_ms, resample, to_float32

SAMPLE_RATE = 16000  # the encoder's rate
# Shorter utterances ("yes", a cough) give unreliable voice prints: they keep the current speaker.
MIN_UTTERANCE_MS = 800

_encoder: Any = None
_load_lock = threading.Lock()
_infer_lock = threading.Lock()


class DiarizationUnavailable(RuntimeError):
    """Resemblyzer (and PyTorch) are not installed: ``make diarization``."""


def diarization_available() -> bool:
    """Whether the speaker encoder can be loaded in this environment."""
    try:
        import resemblyzer  # noqa: F401
    except ImportError:
        return False
    return True


def speaker_encoder() -> Any:
    """The process's speaker encoder, loaded on first use (thread-safe; seconds: call it off the event loop)."""
    global _encoder
    if _encoder is None:
        with _load_lock:
            if _encoder is None:
                try:
                    import torch
                    from resemblyzer import VoiceEncoder
                except ImportError as exc:
                    raise DiarizationUnavailable("speaker diarization needs Resemblyzer: run `make diarization`") from exc
                # One thread, as for Whisper: more would fight the call's event loop and the STT for the cores.
                torch.set_num_threads(1)
                encoder = VoiceEncoder("cpu", verbose=False)
                encoder.embed_utterance(np.zeros(SAMPLE_RATE, dtype=np.float32))  # compiles librosa's kernels now
                _encoder = encoder
    return _encoder


@dataclass(frozen=True)
class SpeakerTurn:
    """Who said an utterance: ``speaker`` ("speaker_1", …); ``similarity`` to that speaker's print (1.0 for a new one)."""

    speaker: str
    similarity: float
    new: bool


@dataclass
class _Speaker:
    label: str
    print_sum: np.ndarray
    utterances: int = 1

    @property
    def print(self) -> np.ndarray:
        mean = self.print_sum / self.utterances
        return mean / np.linalg.norm(mean)


@dataclass
class SpeakerDiarizer:
    """The speakers of one call (not thread-safe: one utterance at a time, from the call's session)."""

    threshold: float = 0.8
    speakers: list[_Speaker] = field(default_factory=list)
    current: str | None = None

    def identify(self, pcm: bytes, sample_rate: int) -> SpeakerTurn | None:
        """Who said this utterance (16-bit mono PCM); None when it is too short to tell."""
        if duration_ms(pcm, sample_rate) < MIN_UTTERANCE_MS:
            return None
        audio = to_float32(resample(pcm, sample_rate, SAMPLE_RATE))
        encoder = speaker_encoder()
        with _infer_lock:  # one inference at a time, on one thread; and one call's speakers updated in order
            return self.assign(encoder.embed_utterance(audio))

    def assign(self, embedding: np.ndarray) -> SpeakerTurn:
        """The speaker of a voice print (unit length): the closest one heard, if close enough; else a new one."""
        best, similarity = None, -1.0
        for speaker in self.speakers:
            score = float(np.dot(speaker.print, embedding))
            if score > similarity:
                best, similarity = speaker, score
        if best is not None and similarity >= self.threshold:
            best.print_sum = best.print_sum + embedding
            best.utterances += 1
            self.current = best.label
            return SpeakerTurn(best.label, round(similarity, 3), new=False)
        speaker = _Speaker(f"speaker_{len(self.speakers) + 1}", np.array(embedding, dtype=np.float64))
        self.speakers.append(speaker)
        self.current = speaker.label
        return SpeakerTurn(speaker.label, 1.0, new=True)
