"""Call recording to WAV files (stdlib ``wave``), one recorder per direction."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

from voice.audio.frame import SAMPLE_WIDTH, AudioFrame


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording: where it is and how long."""

    path: Path
    sample_rate: int
    duration_ms: float


class WavRecorder:
    """An ``AudioStage`` writing every frame it sees to a WAV file while started; frames pass through.

    Put one in the inbound pipeline (after the resampler: what the STT hears)
    and one in the outbound (what the caller hears). The caller chooses the
    path; the file's rate is the first frame's, and a frame at another rate
    is an error (one WAV file has one rate). ``stop()`` closes the file, so it
    is complete even if the call then crashes; ``reset()`` stops too.
    """

    def __init__(self, *, name: str = "recorder") -> None:
        self.name = name
        self._wav: wave.Wave_write | None = None
        self._path: Path | None = None
        self._samples = 0
        self._rate = 0

    @property
    def recording(self) -> bool:
        return self._path is not None

    @property
    def duration_ms(self) -> float:
        """Audio written so far to the current recording."""
        return 1000.0 * self._samples / self._rate if self._rate else 0.0

    def start(self, path: str | Path) -> None:
        """Start recording into ``path`` (created or truncated; its folder must exist)."""
        if self._path is not None:
            raise RuntimeError(f"{self.name}: already recording to {self._path}")
        self._path = Path(path)
        self._samples = 0
        self._rate = 0
        # The file is opened at the first frame, when the rate is known; an
        # empty recording is still a valid (empty) WAV file after stop().

    def process(self, frame: AudioFrame) -> AudioFrame:
        if self._path is None or not frame:
            return frame
        if self._wav is None:
            self._open(frame.sample_rate)
        elif frame.sample_rate != self._rate:
            raise ValueError(f"{self.name}: frame at {frame.sample_rate} Hz in a {self._rate} Hz recording")
        assert self._wav is not None
        self._wav.writeframesraw(frame.pcm)
        self._samples += frame.num_samples
        return frame

    def _open(self, sample_rate: int) -> None:
        wav = wave.open(str(self._path), "wb")
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        self._wav, self._rate = wav, sample_rate

    def stop(self) -> Recording | None:
        """Close the file and describe it; None when not recording."""
        if self._path is None:
            return None
        if self._wav is None:
            self._open(16000)  # nothing arrived: still leave a valid, empty WAV file
        assert self._wav is not None
        self._wav.close()  # rewrites the header with the final length
        done = Recording(self._path, self._rate, self.duration_ms)
        self._wav, self._path = None, None
        return done

    def reset(self) -> None:
        self.stop()
