"""The protocols a pipeline stage implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from voice.audio.events import AudioEvent
from voice.audio.frame import AudioFrame


@runtime_checkable
class AudioStage(Protocol):
    """One step of a pipeline: takes a frame, returns a frame.

    ``name`` identifies the stage in timings and logs, and says what it does:
    ``"resampler"``, ``"recorder"``, ``"aec"``, ``"agc"``, ``"denoise"``,
    ``"vad"``, ``"dtmf"``… The part before a dot names the capability a source
    can declare native (``"aec.reference"`` is skipped with ``"aec"``).

    ``process`` may return an empty frame while it buffers up to its block
    size, and a frame of another length or rate than it got (a resampler).
    ``reset`` forgets all stream state, as at the start of a new call.
    """

    name: str

    def process(self, frame: AudioFrame) -> AudioFrame: ...

    def reset(self) -> None: ...


@runtime_checkable
class EventSource(Protocol):
    """A stage that also reports events (VAD, DTMF); the pipeline drains them after each call."""

    def drain_events(self) -> list[AudioEvent]: ...


@runtime_checkable
class EchoCanceller(AudioStage, Protocol):
    """An inbound stage that removes from the microphone what the far end (our own speech) put there.

    ``feed_reference`` gets every outbound frame as it leaves for the client;
    the outbound pipeline calls it through :class:`EchoReference`.
    """

    def feed_reference(self, frame: AudioFrame) -> None: ...


class EchoReference:
    """The outbound stage that hands each frame to an echo canceller as its reference, unchanged."""

    name = "aec.reference"

    def __init__(self, canceller: EchoCanceller) -> None:
        self.canceller = canceller

    def process(self, frame: AudioFrame) -> AudioFrame:
        self.canceller.feed_reference(frame)
        return frame

    def reset(self) -> None:
        # The canceller owns the reference buffer and resets it with its own state.
        pass
