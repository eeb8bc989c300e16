"""OpenAI speech-to-text (``POST /v1/audio/transcriptions``) through the ``openai`` SDK.

Also any server that speaks the same API (a self-hosted faster-whisper
server, vLLM) through ``base_url``.
"""

from __future__ import annotations

import math

from voice.speech.base import Transcript
from voice.speech.cloud import openai_client, openai_error
from voice.speech.pcm import duration_ms, resample, to_wav


class OpenAISTT:
    """Whole-utterance recognition by OpenAI; one upload per utterance, as WAV.

    ``logprobs`` asks for token log-probabilities (``gpt-4o-transcribe`` and
    ``gpt-4o-mini-transcribe`` only) to give a confidence. Safe from many
    threads: the SDK client is shared and thread-safe.
    """

    name = "openai"
    sample_rate = 16000  # any rate is accepted in a WAV; 16 kHz is what the models hear
    streaming = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-transcribe",
        language: str | None = "en",
        prompt: str | None = None,
        logprobs: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.model = model
        self.language = language
        self.prompt = prompt
        self.logprobs = logprobs
        self._client = openai_client(api_key, base_url, timeout)

    def __repr__(self) -> str:
        return f"OpenAISTT(model={self.model!r}, base_url={str(self._client.base_url)!r})"

    def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript:
        extra: dict = {}
        if self.language:
            extra["language"] = self.language
        if self.prompt:
            extra["prompt"] = self.prompt
        if self.logprobs:
            extra["include"] = ["logprobs"]
        try:
            result = self._client.audio.transcriptions.create(
                model=self.model,
                # At the models' rate: a 48 kHz upload would be three times the bytes for nothing.
                file=("utterance.wav", to_wav(resample(pcm, sample_rate, self.sample_rate), self.sample_rate), "audio/wav"),
                response_format="json",
                **extra,
            )
        except Exception as exc:
            raise openai_error(exc) from exc
        confidence = None
        if result.logprobs:
            confidence = round(math.exp(sum(lp.logprob or 0.0 for lp in result.logprobs) / len(result.logprobs)), 4)
        return Transcript(result.text.strip(), confidence, self.language, duration_ms(pcm, sample_rate))
