"""Acoustic echo cancellation with SpeexDSP's adaptive filter (``speexaec``, built against Debian's libspeexdsp).

Telephones and loudspeakers send our own TTS back through the caller's
microphone; without cancellation the VAD hears the agent and barges in on
itself. Browsers cancel echo themselves (declare ``native={"aec"}``).

The reference (what we play) arrives in bursts, faster than real time, as TTS
produces it; the client plays it at real time. So the canceller keeps the
reference in a FIFO and takes from it exactly as many samples as each
microphone block holds: the FIFO is drained at the playback clock, and the
delay between playing and hearing (network, jitter buffer, the room) is what
the adaptive filter learns, up to ``tail_ms``.

Measured here (16 kHz, 20 ms blocks, 200 ms tail): ~67 µs per block; an echo
path of 30–45 ms is cancelled by ~28 dB once converged (a few seconds).
"""

from __future__ import annotations

from voice.audio.frame import SAMPLE_WIDTH, AudioFrame, BlockBuffer
from voice.audio.resample import Resampler


def echo_cancellation_available() -> bool:
    """Whether ``speexaec`` (built against the system's SpeexDSP) is installed."""
    try:
        import speexaec  # noqa: F401
    except ImportError:
        return False
    return True


class SpeexEchoCanceller:
    """An ``EchoCanceller`` stage (``"aec"``) on ``frame_ms`` blocks at ``sample_rate``.

    ``feed_reference`` takes outbound frames at any rate (TTS at 24 kHz, say)
    and converts them. At most ``max_reference_ms`` of unplayed reference is
    kept: a reply queued further ahead than that has its oldest audio dropped
    (it would be out of the filter's reach anyway).
    """

    name = "aec"

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        frame_ms: int = 20,
        tail_ms: int = 200,
        max_reference_ms: int = 30_000,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.tail_samples = sample_rate * tail_ms // 1000
        self._max_reference_bytes = sample_rate * max_reference_ms // 1000 * SAMPLE_WIDTH
        self._silence = bytes(self.frame_samples * SAMPLE_WIDTH)
        self._resamplers: dict[int, Resampler] = {}
        self.reset()

    def reset(self) -> None:
        # Imported here: speexaec is built against the system's SpeexDSP and may be missing
        # (``make`` says so); ``echo_cancellation_available`` tells callers before they build a stage.
        from speexaec import EchoCanceller

        self._canceller = EchoCanceller(self.frame_samples, self.tail_samples, self.sample_rate)
        self._blocks = BlockBuffer(self.frame_samples)
        self._reference = bytearray()
        self._quiet_samples = self.tail_samples  # nothing played yet: nothing to cancel
        for resampler in self._resamplers.values():
            resampler.reset()

    def feed_reference(self, frame: AudioFrame) -> None:
        if frame.sample_rate != self.sample_rate:
            resampler = self._resamplers.get(frame.sample_rate)
            if resampler is None:
                resampler = self._resamplers[frame.sample_rate] = Resampler(frame.sample_rate, self.sample_rate)
            frame = resampler.process(frame)
        self._reference += frame.pcm
        overflow = len(self._reference) - self._max_reference_bytes
        if overflow > 0:
            del self._reference[: overflow + overflow % SAMPLE_WIDTH]

    @property
    def pending_reference_ms(self) -> float:
        """Reference audio queued and not yet matched with microphone audio."""
        return 1000.0 * len(self._reference) / SAMPLE_WIDTH / self.sample_rate

    def process(self, frame: AudioFrame) -> AudioFrame:
        if frame.sample_rate != self.sample_rate:
            raise ValueError(f"aec: frame at {frame.sample_rate} Hz, expected {self.sample_rate} Hz")
        out = []
        block_bytes = len(self._silence)
        for near in self._blocks.feed(frame.pcm):
            if self._reference:
                far = bytes(self._reference[:block_bytes])
                del self._reference[:block_bytes]
                far = far.ljust(block_bytes, b"\0")
                self._quiet_samples = 0
            else:
                # Nothing played for a whole tail: there is no echo left to
                # remove, so the block passes untouched and costs nothing.
                if self._quiet_samples >= self.tail_samples:
                    out.append(near)
                    continue
                far = self._silence
                self._quiet_samples += self.frame_samples
            out.append(self._canceller.process_bytes(near, far))
        return AudioFrame(b"".join(out), self.sample_rate)
