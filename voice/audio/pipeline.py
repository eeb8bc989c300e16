"""Runs stages in order, times them, skips what the source does natively, survives a failing stage."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from voice.audio.events import AudioEvent
from voice.audio.frame import AudioFrame
from voice.audio.stage import AudioStage, EchoCanceller, EchoReference, EventSource

logger = logging.getLogger(__name__)


@dataclass
class StageTiming:
    """Cumulative cost of one stage since the pipeline was built (or ``reset_timings``)."""

    name: str
    calls: int = 0
    total_ns: int = 0

    @property
    def total_us(self) -> float:
        return self.total_ns / 1000

    @property
    def mean_us(self) -> float:
        return self.total_ns / 1000 / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What one ``Pipeline.process`` call produced: the last stage's frame and every stage's events, in order."""

    frame: AudioFrame
    events: list[AudioEvent] = field(default_factory=list)


class _Slot:
    """A stage with its bookkeeping, so the hot loop does no dictionary look-ups."""

    __slots__ = ("stage", "timing", "drain", "bypassed")

    def __init__(self, stage: AudioStage) -> None:
        self.stage = stage
        self.timing = StageTiming(stage.name)
        self.drain = stage.drain_events if isinstance(stage, EventSource) else None
        self.bypassed: str | None = None


class Pipeline:
    """Stages run in order on each frame; ``taps`` see the raw input frame in parallel.

    - ``native``: capabilities the source already provides (a browser's
      ``{"aec", "agc", "denoise"}``); stages whose name (before any dot) is in
      it are skipped for the whole call and listed in ``skipped``.
    - Each stage's time is added up per stage (``timings()``,
      ``timing_summary()`` for a log line).
    - A stage that raises is logged once with its traceback, then bypassed for
      the rest of the call (its input goes on to the next stage) and listed in
      ``bypassed``; one broken stage must not end a phone call.
    - A stage returning an empty frame (it is buffering) ends this call early:
      later stages have nothing to do.

    One pipeline per call and direction; not thread-safe.
    """

    def __init__(
        self,
        stages: Iterable[AudioStage],
        *,
        taps: Iterable[AudioStage] = (),
        native: Collection[str] = (),
        name: str = "pipeline",
    ) -> None:
        self.name = name
        self.native = frozenset(native)
        stage_list, tap_list = list(stages), list(taps)
        self.skipped = [s.name for s in (*stage_list, *tap_list) if s.name.split(".", 1)[0] in self.native]
        chosen = [s for s in stage_list if s.name not in self.skipped]
        tap_list = [t for t in tap_list if t.name not in self.skipped]
        names = [s.name for s in (*chosen, *tap_list)]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique within a pipeline: {names}")
        self._slots = [_Slot(s) for s in chosen]
        self._taps = [_Slot(t) for t in tap_list]

    @property
    def stage_names(self) -> list[str]:
        """The stages that run, in order (taps last)."""
        return [s.stage.name for s in self._slots] + [t.stage.name for t in self._taps]

    def stage(self, name: str) -> AudioStage:
        for slot in (*self._slots, *self._taps):
            if slot.stage.name == name:
                return slot.stage
        raise KeyError(name)

    @property
    def bypassed(self) -> dict[str, str]:
        """Stages bypassed after raising, with the error that did it."""
        return {s.stage.name: s.bypassed for s in (*self._slots, *self._taps) if s.bypassed is not None}

    def process(self, frame: AudioFrame) -> PipelineOutput:
        events: list[AudioEvent] = []
        for tap in self._taps:
            self._run(tap, frame, events)
        for slot in self._slots:
            frame = self._run(slot, frame, events)
            if not frame:
                break
        return PipelineOutput(frame, events)

    def _run(self, slot: _Slot, frame: AudioFrame, events: list[AudioEvent]) -> AudioFrame:
        if slot.bypassed is not None:
            return frame
        started = time.perf_counter_ns()
        try:
            out = slot.stage.process(frame)
            if slot.drain is not None:
                drained = slot.drain()
                if drained:
                    events.extend(drained)
        except Exception as exc:
            slot.bypassed = f"{type(exc).__name__}: {exc}"
            logger.exception("%s pipeline: stage %r failed; bypassing it for the rest of the call", self.name, slot.stage.name)
            out = frame
        slot.timing.calls += 1
        slot.timing.total_ns += time.perf_counter_ns() - started
        return out

    def timings(self) -> list[StageTiming]:
        return [s.timing for s in (*self._slots, *self._taps)]

    def timing_summary(self) -> str:
        """One log line: ``inbound: resampler 812µs/312 (2.6µs) · vad 402µs/312 (1.3µs)`` (total/calls (mean))."""
        parts = [f"{t.name} {t.total_us:.0f}µs/{t.calls} ({t.mean_us:.1f}µs)" for t in self.timings()]
        return f"{self.name}: " + " · ".join(parts)

    def reset_timings(self) -> None:
        for slot in (*self._slots, *self._taps):
            slot.timing = StageTiming(slot.stage.name)

    def reset(self) -> None:
        """Reset every stage's stream state (bypassed stages stay bypassed: they failed on this call)."""
        for slot in (*self._slots, *self._taps):
            slot.stage.reset()


def inbound_pipeline(
    *,
    resampler: AudioStage | None = None,
    recorder: AudioStage | None = None,
    aec: EchoCanceller | None = None,
    agc: AudioStage | None = None,
    denoiser: AudioStage | None = None,
    vad: AudioStage | None = None,
    diarization: AudioStage | None = None,
    dtmf: AudioStage | None = None,
    native: Collection[str] = (),
) -> Pipeline:
    """Microphone to STT, in RoomKit's order: resampler → recorder → AEC → AGC → denoiser → VAD → diarization.

    DTMF is a tap on the raw input (before the resampler: tones are cleanest
    at the transport's own rate, and the denoiser would eat them).
    """
    stages = [s for s in (resampler, recorder, aec, agc, denoiser, vad, diarization) if s is not None]
    return Pipeline(stages, taps=[dtmf] if dtmf is not None else [], native=native, name="inbound")


def outbound_pipeline(
    *,
    post_processors: Sequence[AudioStage] = (),
    recorder: AudioStage | None = None,
    aec: EchoCanceller | None = None,
    resampler: AudioStage | None = None,
    native: Collection[str] = (),
) -> Pipeline:
    """TTS to the client: post-processors → recorder → AEC reference → resampler.

    ``aec`` is the same canceller the inbound pipeline runs; it gets each
    outbound frame as its far-end reference (at the TTS rate; it converts).
    """
    stages: list[AudioStage] = [*post_processors]
    if recorder is not None:
        stages.append(recorder)
    if aec is not None:
        stages.append(EchoReference(aec))
    if resampler is not None:
        stages.append(resampler)
    return Pipeline(stages, native=native, name="outbound")
