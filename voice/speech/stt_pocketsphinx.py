"""PocketSphinx, offline and streaming: hears an utterance while it is spoken.

Its wheel carries a US English acoustic model, language model and dictionary,
the defaults here. It is fast (the final text comes ~25–160 ms after the
last audio) but often wrong on open speech; see the README's numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

from voice.speech.base import PartialTranscript, SpeechError, Transcript
from voice.speech.pcm import SAMPLE_WIDTH, StreamResampler


class DecoderPool:
    """Decoders to lend, one per utterance in progress.

    A PocketSphinx decoder is not thread-safe and holds its models (~90 MB
    each), so each utterance borrows one for its whole length and the pool
    never makes more than ``max_decoders``: past that, a caller waits up to
    ``timeout`` seconds for one to come back, then gets a retryable
    ``SpeechError``. Decoders are made by ``factory`` when first needed, and kept.
    """

    def __init__(self, factory: Callable[[], Any], *, max_decoders: int, timeout: float) -> None:
        self._factory = factory
        self._max = max_decoders
        self._timeout = timeout
        self._idle: list[Any] = []
        self._made = 0
        self._cond = threading.Condition()

    def acquire(self) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._idle or self._made < self._max, timeout=self._timeout):
                raise SpeechError(f"all {self._max} speech decoders are busy (waited {self._timeout:g} s)", retryable=True)
            if self._idle:
                return self._idle.pop()
            self._made += 1
        try:
            return self._factory()
        except Exception:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def release(self, decoder: Any) -> None:
        with self._cond:
            self._idle.append(decoder)
            self._cond.notify()

    @property
    def size(self) -> int:
        """Decoders made so far."""
        return self._made


class PocketSphinxSTT:
    """Streaming recognition with PocketSphinx.

    Safe from many threads: every utterance (``transcribe`` or a stream)
    borrows its own decoder from the pool.
    """

    name = "pocketsphinx"
    sample_rate = 16000  # the packaged acoustic model's rate
    streaming = True

    def __init__(
        self,
        *,
        hmm: str | None = None,
        lm: str | None = None,
        dict: str | None = None,  # noqa: A002 - PocketSphinx's own option name
        language: str | None = "en",
        max_decoders: int = 4,
        acquire_timeout: float = 10.0,
    ) -> None:
        import pocketsphinx

        self.language = language
        options: dict[str, Any] = {"samprate": self.sample_rate, "loglevel": "FATAL"}
        for key, value in (("hmm", hmm), ("lm", lm), ("dict", dict)):
            if value:
                options[key] = value
        self.pool = DecoderPool(
            lambda: _FreshDecoder(pocketsphinx.Decoder(**options)), max_decoders=max_decoders, timeout=acquire_timeout
        )
        # Load the models now, not in the first caller's turn.
        self.pool.release(self.pool.acquire())

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        with self.open_stream(sample_rate) as stream:
            stream.feed(pcm)
            return stream.finish()

    def open_stream(self, sample_rate: int) -> PocketSphinxStream:
        return PocketSphinxStream(self.pool, sample_rate, self.sample_rate, self.language)


class _FreshDecoder:
    """A decoder that starts each utterance as a new one would, not from where the last caller left it.

    PocketSphinx's front end adapts to what it hears and keeps it across
    utterances: its cepstral mean and its noise estimate (``remove_noise``).
    A pooled decoder would hear one call with the line of another, and
    recognized differently after a stretch of noise. ``reinit_feat`` rebuilds
    both from the configuration (~0.1 ms per utterance).
    """

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def start_utt(self) -> None:
        self._decoder.reinit_feat()
        self._decoder.start_utt()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)


class PocketSphinxStream:
    """One utterance on a borrowed decoder; see ``SttStream``."""

    def __init__(self, pool: DecoderPool, sample_rate: int, decoder_rate: int, language: str | None) -> None:
        self._pool = pool
        self._language = language
        self._decoder = pool.acquire()
        self._decoder.start_utt()
        self._resampler = StreamResampler(sample_rate, decoder_rate) if sample_rate != decoder_rate else None
        self._input_rate = sample_rate
        self._fed_bytes = 0
        self._last_text = ""

    def feed(self, pcm: bytes) -> list[PartialTranscript]:
        decoder = self._require_decoder()
        self._fed_bytes += len(pcm)
        audio = self._resampler.push(pcm) if self._resampler else pcm
        if audio:  # the resampler holds back the first few milliseconds
            decoder.process_raw(audio, False, False)
        hyp = decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text == self._last_text:
            return []
        self._last_text = text
        return [PartialTranscript(text)]

    def finish(self) -> Transcript:
        decoder = self._require_decoder()
        ended = False
        try:
            if self._resampler and (tail := self._resampler.push(b"", last=True)):
                decoder.process_raw(tail, False, False)
            decoder.end_utt()
            ended = True
            hyp = decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
        finally:
            self._give_back(ended=ended)
        return Transcript(text, None, self._language, self._fed_ms())

    def close(self) -> None:
        if self._decoder is not None:
            self._give_back(ended=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream dropped without finish() or close() still gives its decoder back.
        if getattr(self, "_decoder", None) is not None:
            self._give_back(ended=False)

    def _fed_ms(self) -> int:
        return self._fed_bytes // SAMPLE_WIDTH * 1000 // self._input_rate

    def _require_decoder(self) -> Any:
        if self._decoder is None:
            raise SpeechError("this pocketsphinx stream is already finished or closed", retryable=False)
        return self._decoder

    def _give_back(self, *, ended: bool) -> None:
        decoder, self._decoder = self._decoder, None
        if not ended:
            try:
                decoder.end_utt()
            except RuntimeError:
                pass  # never started or already ended: the decoder is reusable either way
        self._pool.release(decoder)
