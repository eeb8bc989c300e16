"""What every speech engine promises: the results, the protocols and the one error type.

Audio everywhere is 16-bit little-endian mono PCM in ``bytes``; a sample rate
travels beside it as an ``int``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable


@dataclass(frozen=True)
class Transcript:
    """The final text of one utterance.

    ``confidence`` is in [0, 1] when the engine gives one, else ``None``;
    ``duration_ms`` is the length of the audio that was transcribed.
    """

    text: str
    confidence: float | None
    language: str | None
    duration_ms: int


@dataclass(frozen=True)
class PartialTranscript:
    """What a streaming engine has heard so far of the utterance under way.

    ``text`` is the whole utterance so far, not a delta. ``stable`` is true when
    the engine says that text will not change any more (Deepgram's
    ``is_final``); later partials then only add to it.
    """

    text: str
    stable: bool = False


class SpeechError(Exception):
    """A speech engine failed.

    ``retryable`` is true when the same call may succeed later (a timeout, a
    dropped connection, 429 or 5xx from a vendor); false when it never will as
    configured (bad key, bad request, unknown voice). ``status`` is the vendor's
    HTTP status when there was one; ``retry_after`` the seconds it asked for.
    Messages never hold an API key.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class SpeechConfigError(SpeechError, ValueError):
    """The configuration names no usable engine, model or voice (never retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@runtime_checkable
class SttStream(Protocol):
    """One utterance being recognized while it is spoken.

    Use it from one thread at a time (successive calls may come from different
    threads). End it with ``finish()``, or ``close()`` to drop it (the caller
    hung up); either frees what it holds (a decoder, a connection), and so does
    leaving a ``with`` block.
    """

    def feed(self, pcm: bytes) -> list[PartialTranscript]:
        """Add audio at the stream's sample rate; return what changed in the hypothesis (often nothing)."""
        ...

    def finish(self) -> Transcript:
        """No more audio: return the final transcript of everything fed."""
        ...

    def close(self) -> None:
        """Abandon the stream without a result; does nothing after ``finish``."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class SpeechToText(Protocol):
    """An engine that turns speech into text.

    ``sample_rate`` is the rate the engine works at: audio at another rate is
    resampled first (free when the caller already sends this rate).
    ``streaming`` tells whether ``open_stream`` is available. Every method is
    safe to call from many threads at once, and blocks: call it from a worker
    thread, never on the event loop.
    """

    name: str
    sample_rate: int
    streaming: bool

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        """The text of one whole utterance."""
        ...


@runtime_checkable
class StreamingSpeechToText(SpeechToText, Protocol):
    """A speech-to-text engine that can also hear an utterance while it is spoken."""

    def open_stream(self, sample_rate: int) -> SttStream:
        """Start one utterance whose audio comes at ``sample_rate``."""
        ...


@runtime_checkable
class TextToSpeech(Protocol):
    """An engine that speaks text.

    ``synthesize`` returns an iterator of PCM chunks at ``sample_rate`` (each a
    whole number of samples, of any length) as soon as the engine has them:
    the first sentence's audio comes before the next sentence is synthesized.
    Stop early by closing the iterator (``close()``, or dropping it): whatever
    it holds (a process, a connection) is released then. Engines are safe to
    use from many threads at once; one iterator is used by one thread at a
    time, and nothing of it runs on the event loop.
    """

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """PCM chunks of ``text`` spoken, first ones early."""
        ...
