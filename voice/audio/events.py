"""What the pipeline's stages report besides audio: speech boundaries, levels, DTMF digits.

Every event carries ``at_ms``, the stream time it refers to, counted in
samples the stage has seen (not wall-clock), so tests and logs line up with
the audio itself. ``kind`` is the name the consumer and the hooks use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class AudioEvent:
    kind: ClassVar[str] = "audio_event"
    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStart(AudioEvent):
    """Speech has lasted ``min_speech_ms``; ``at_ms`` is where it began (after any pre-roll)."""

    kind: ClassVar[str] = "speech_start"


@dataclass(frozen=True, slots=True)
class SpeechProbableEnd(AudioEvent):
    """Silence has lasted ``probable_end_ms`` after speech: the utterance is probably over.

    ``pcm`` is the utterance so far (pre-roll, speech and the silence up to
    now). Start transcribing it now: if no ``SpeechResumed`` follows, the
    ``SpeechEnd`` that closes this utterance carries exactly these bytes, so a
    transcript of them is the transcript of the final utterance.
    ``last_voiced_ms`` is the stream time of the end of the last voiced window.
    """

    kind: ClassVar[str] = "speech_probable_end"
    pcm: bytes = field(repr=False)
    sample_rate: int
    last_voiced_ms: float


@dataclass(frozen=True, slots=True)
class SpeechResumed(AudioEvent):
    """Speech came back after a ``SpeechProbableEnd``: drop what was started on that guess."""

    kind: ClassVar[str] = "speech_resumed"


@dataclass(frozen=True, slots=True)
class SpeechEnd(AudioEvent):
    """The end-of-speech silence (``end_silence_ms``) has run out, or the utterance hit ``max_utterance_ms``.

    ``pcm`` is the whole utterance: the same bytes as the last
    ``SpeechProbableEnd`` when one came (always, unless cut at the maximum).
    """

    kind: ClassVar[str] = "speech_end"
    pcm: bytes = field(repr=False)
    sample_rate: int
    last_voiced_ms: float
    forced: bool = False

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class AudioLevel(AudioEvent):
    """The input level over the last ``level_interval_ms``: RMS and peak in dBFS, and whether it was speech."""

    kind: ClassVar[str] = "audio_level"
    rms_dbfs: float
    peak_dbfs: float
    speaking: bool


@dataclass(frozen=True, slots=True)
class DtmfDigit(AudioEvent):
    """A key press, reported once when the tone has lasted the minimum duration; ``at_ms`` is where the tone began."""

    kind: ClassVar[str] = "dtmf"
    digit: str
