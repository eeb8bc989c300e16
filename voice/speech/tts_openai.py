"""OpenAI text-to-speech (``POST /v1/audio/speech``, raw PCM) through the ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Iterator

from voice.speech.cloud import openai_client, openai_error
from voice.speech.pcm import whole_samples

OPENAI_PCM_RATE = 24000  # ``response_format=pcm`` is 24 kHz 16-bit mono, little-endian
_CHUNK_BYTES = 4800  # 100 ms


class OpenAITTS:
    """Speech from OpenAI, read as the response body streams in.

    The iterator holds one HTTP response open; closing it early closes that
    response (the connection is dropped, not drained). Safe from many
    threads: the SDK client is shared and thread-safe.
    """

    name = "openai"
    sample_rate = OPENAI_PCM_RATE

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        instructions: str | None = None,
        speed: float | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.speed = speed
        self._client = openai_client(api_key, base_url, timeout)

    def __repr__(self) -> str:
        return f"OpenAITTS(model={self.model!r}, voice={self.voice!r}, base_url={str(self._client.base_url)!r})"

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return  # nothing to say (a vendor would answer 400)
        extra: dict = {}
        if self.instructions:
            extra["instructions"] = self.instructions
        if self.speed:
            extra["speed"] = self.speed
        try:
            with self._client.audio.speech.with_streaming_response.create(
                model=self.model, voice=self.voice, input=text, response_format="pcm", **extra
            ) as response:
                yield from whole_samples(response.iter_bytes(_CHUNK_BYTES))
        except Exception as exc:
            raise openai_error(exc) from exc
