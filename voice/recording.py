"""A call's recording: what the caller said and what they were played, as two WAV files.

Written to temporary files while the call runs (``voice.audio.WavRecorder``:
nothing held in memory), then stored as media (``channels_app.inbound_media``,
served at ``/media/`` like any attachment) and linked from the room's
timeline by an internal note with a player (``voice.services``). Files older
than ``ROOMKIT_RECORDING_RETENTION_DAYS`` are deleted by the room sweeper.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from voice.audio import AudioFrame, WavRecorder


class CallRecorder:
    """The caller's audio (``inbound``) and the call's speech (``outbound``), each to its own WAV file."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="rk-call-"))
        self._inbound = WavRecorder(name="recorder.in")
        self._outbound = WavRecorder(name="recorder.out")
        self._inbound.start(self._dir / "caller.wav")
        self._outbound.start(self._dir / "agent.wav")

    def inbound(self, frame: AudioFrame) -> None:
        self._inbound.process(frame)

    def outbound(self, frame: AudioFrame) -> None:
        self._outbound.process(frame)

    def finish(self) -> list[tuple[str, bytes, float]]:
        """Stop both; ``(label, WAV bytes, duration ms)`` for each that holds any audio. The files are removed."""
        out = []
        for label, recorder in (("Caller", self._inbound), ("Agent", self._outbound)):
            recording = recorder.stop() if recorder.recording else None
            if recording is not None and recording.duration_ms > 0:
                out.append((label, Path(recording.path).read_bytes(), recording.duration_ms))
        for path in self._dir.iterdir():
            path.unlink(missing_ok=True)
        self._dir.rmdir()
        return out
