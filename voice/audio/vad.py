"""The VAD stage: turns per-window speech decisions into utterances and events.

Timeline of one utterance (windows are the detector's, e.g. 20 ms)::

    quiet ─ voiced… ≥ min_speech_ms ─► speech_start
            speaking… silence ≥ probable_end_ms ─► speech_probable_end (pcm so far)
            [voiced again ─► speech_resumed, back to speaking]
            silence ≥ end_silence_ms ─► speech_end (the same pcm)

``speech_probable_end`` exists for latency: the consumer can start the STT
(and even the reply) when silence begins, while the end-of-speech hangover
still runs, and drop that work on ``speech_resumed``. With
``probable_end_ms=200`` the transcript can start 200 ms after the last voiced
window instead of ``end_silence_ms`` (600) after it.

The utterance PCM is: ``pre_roll_ms`` of audio before speech was detected
(word onsets are quiet and the detector is late on them), the speech, and the
silence up to the probable end. It is capped at ``max_utterance_ms``: a
``speech_end`` with ``forced=True`` closes it there, and detection starts
over (in the hangover, the cap just ends the utterance early, unforced).

Every ``level_interval_ms`` the stage also reports the input level
(``audio_level``), for meters and for barge-in thresholds.

All times are stream times from the samples seen, so the stage behaves the
same in a test that feeds 10 s of audio in 1 ms as on a live call.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from voice.audio.events import AudioEvent, AudioLevel, SpeechEnd, SpeechProbableEnd, SpeechResumed, SpeechStart
from voice.audio.frame import SAMPLE_WIDTH, AudioFrame, BlockBuffer
from voice.audio.levels import LevelMeter
from voice.audio.speech_detectors import SpeechDetector


@dataclass(frozen=True, slots=True)
class VADConfig:
    """Settings shared by every detector.

    - ``silence_threshold``: a window whose speech probability is at or below
      this is silence (WebRTC and energy answer 0 or 1; Silero's 0.5 is its
      authors' default).
    - ``pre_roll_ms``: audio kept before the detected start (speech padding).
    - ``min_speech_ms``: voiced time needed before ``speech_start`` (clicks and
      coughs shorter than this are ignored); a silence of ``probable_end_ms``
      before that abandons the candidate.
    - ``probable_end_ms``: silence after speech that raises ``speech_probable_end``.
    - ``end_silence_ms``: silence after speech that ends the utterance (the hangover).
    - ``max_utterance_ms``: longest utterance; longer is cut (``forced``).
    - ``level_interval_ms``: how often ``audio_level`` is reported (0: never).
    """

    silence_threshold: float = 0.5
    pre_roll_ms: int = 300
    min_speech_ms: int = 200
    probable_end_ms: int = 200
    end_silence_ms: int = 600
    max_utterance_ms: int = 30_000
    level_interval_ms: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.probable_end_ms <= self.end_silence_ms:
            raise ValueError("need 0 < probable_end_ms <= end_silence_ms")
        if self.min_speech_ms < 0 or self.pre_roll_ms < 0 or self.max_utterance_ms <= 0:
            raise ValueError("durations must not be negative (max_utterance_ms positive)")


_QUIET, _CANDIDATE, _SPEAKING = 0, 1, 2


class VoiceActivityDetector:
    """An ``AudioStage`` (``"vad"``) and ``EventSource``: frames pass through unchanged; events are drained by the pipeline.

    Runs ``detector`` on its windows (buffering across frames: decisions lag
    the audio by less than one window) and applies ``config``.
    """

    name = "vad"

    def __init__(self, detector: SpeechDetector, config: VADConfig | None = None) -> None:
        self.detector = detector
        self.config = config or VADConfig()
        self.sample_rate = detector.sample_rate
        self.window_ms = 1000.0 * detector.window_samples / self.sample_rate
        self._window_bytes = detector.window_samples * SAMPLE_WIDTH
        self._bytes_per_ms = self.sample_rate * SAMPLE_WIDTH / 1000.0
        self._blocks = BlockBuffer(detector.window_samples)
        self._pre_roll: collections.deque[bytes] = collections.deque(maxlen=math.ceil(self.config.pre_roll_ms / self.window_ms))
        self.reset()

    # -- stage protocol ----------------------------------------------------

    def reset(self) -> None:
        self.detector.reset()
        self._blocks.clear()
        self._pre_roll.clear()
        self._events: list[AudioEvent] = []
        self._state = _QUIET
        self._now_ms = 0.0  # stream time at the end of the last window
        self._utterance: list[bytes] = []
        self._utterance_bytes = 0
        self._start_ms = 0.0
        self._voiced_ms = 0.0
        self._silence_ms = 0.0
        self._last_voiced_ms = 0.0
        self._probable_pcm: bytes | None = None
        self._levels = LevelMeter(self.sample_rate, self.config.level_interval_ms) if self.config.level_interval_ms else None

    def process(self, frame: AudioFrame) -> AudioFrame:
        if frame.sample_rate != self.sample_rate:
            raise ValueError(f"vad: frame at {frame.sample_rate} Hz, expected {self.sample_rate} Hz")
        for window in self._blocks.feed(frame.pcm):
            self._window(window)
        return frame

    def drain_events(self) -> list[AudioEvent]:
        events, self._events = self._events, []
        return events

    @property
    def speaking(self) -> bool:
        """True from ``speech_start`` to ``speech_end`` (including the hangover)."""
        return self._state == _SPEAKING

    def utterance_pcm(self) -> bytes:
        """The open utterance's audio so far (pre-roll included); empty when nobody is speaking."""
        return b"".join(self._utterance) if self._state == _SPEAKING else b""

    @property
    def last_voiced_ms(self) -> float:
        """Stream time of the end of the last voiced window: how far the caller's speech has reached."""
        return self._last_voiced_ms

    # -- the state machine -------------------------------------------------

    def _window(self, window: bytes) -> None:
        cfg = self.config
        started_ms = self._now_ms
        self._now_ms += self.window_ms
        voiced = self.detector.speech_probability(window) > cfg.silence_threshold
        if self._levels is not None:
            for level in self._levels.feed(window):
                self._events.append(AudioLevel(self._now_ms, level.rms_dbfs, level.peak_dbfs, self._state == _SPEAKING))

        if self._state == _QUIET:
            if voiced:
                self._state = _CANDIDATE
                self._utterance = [*self._pre_roll, window]
                self._utterance_bytes = sum(map(len, self._utterance))
                self._start_ms = started_ms
                self._voiced_ms = self.window_ms
                self._silence_ms = 0.0
                self._last_voiced_ms = self._now_ms
                self._maybe_start()
        elif self._state == _CANDIDATE:
            self._append(window)
            if voiced:
                self._voiced_ms += self.window_ms
                self._silence_ms = 0.0
                self._last_voiced_ms = self._now_ms
                self._maybe_start()
            else:
                self._silence_ms += self.window_ms
                if self._silence_ms >= cfg.probable_end_ms:
                    self._state = _QUIET
                    self._utterance = []
        else:
            self._append(window)
            if voiced:
                self._last_voiced_ms = self._now_ms
                self._silence_ms = 0.0
                if self._probable_pcm is not None:
                    self._probable_pcm = None
                    self._events.append(SpeechResumed(self._now_ms))
            else:
                self._silence_ms += self.window_ms
                if self._probable_pcm is None and self._silence_ms >= cfg.probable_end_ms:
                    self._probable_pcm = b"".join(self._utterance)
                    self._events.append(
                        SpeechProbableEnd(self._now_ms, self._probable_pcm, self.sample_rate, self._last_voiced_ms)
                    )
                if self._silence_ms >= cfg.end_silence_ms:
                    self._end(self._probable_pcm or b"".join(self._utterance), forced=False)
            if self._state == _SPEAKING and self._utterance_bytes >= cfg.max_utterance_ms * self._bytes_per_ms:
                if self._probable_pcm is not None:
                    # Already in the hangover: end early, keeping the promise that the
                    # end carries the probable end's bytes.
                    self._end(self._probable_pcm, forced=False)
                else:
                    self._end(b"".join(self._utterance), forced=True)
        self._pre_roll.append(window)

    def _append(self, window: bytes) -> None:
        self._utterance.append(window)
        self._utterance_bytes += len(window)

    def _maybe_start(self) -> None:
        if self._voiced_ms >= self.config.min_speech_ms:
            self._state = _SPEAKING
            self._probable_pcm = None
            self._events.append(SpeechStart(self._start_ms))

    def _end(self, pcm: bytes, *, forced: bool) -> None:
        self._events.append(SpeechEnd(self._now_ms, pcm, self.sample_rate, self._last_voiced_ms, forced))
        self._state = _QUIET
        self._utterance = []
        self._utterance_bytes = 0
        self._probable_pcm = None
