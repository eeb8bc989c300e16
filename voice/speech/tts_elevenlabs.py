"""ElevenLabs streaming text-to-speech (``POST /v1/text-to-speech/{voice_id}/stream``), raw PCM out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from voice.speech.base import SpeechConfigError
from voice.speech.cloud import http_client, httpx_error, status_error
from voice.speech.pcm import whole_samples

# The PCM rates ElevenLabs offers as ``output_format=pcm_<rate>`` (44100 needs a Pro plan).
ELEVENLABS_PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
_CHUNK_BYTES = 3200


class ElevenLabsTTS:
    """Speech from ElevenLabs, read as the response streams in.

    ``voice`` is an ElevenLabs voice id; ``sample_rate`` one of
    ``ELEVENLABS_PCM_RATES`` (16 kHz by default, what the browser client
    sends too). Closing the iterator early closes the HTTP response. Safe from
    many threads: the HTTP client is shared and thread-safe.
    """

    name = "elevenlabs"

    def __init__(
        self,
        *,
        api_key: str,
        voice: str,
        base_url: str = "https://api.elevenlabs.io",
        model: str = "eleven_flash_v2_5",
        sample_rate: int = 16000,
        voice_settings: dict[str, Any] | None = None,
        language: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if sample_rate not in ELEVENLABS_PCM_RATES:
            raise SpeechConfigError(f"elevenlabs has no PCM output at {sample_rate} Hz (one of {ELEVENLABS_PCM_RATES})")
        if not voice:
            raise SpeechConfigError("elevenlabs needs a voice id")
        self.voice = voice
        self.model = model
        self.sample_rate = sample_rate
        self.voice_settings = voice_settings
        self.language = language
        self._url = f"{base_url.rstrip('/')}/v1/text-to-speech/{quote(voice, safe='')}/stream"
        self._api_key = api_key
        self._client = http_client(timeout)

    def __repr__(self) -> str:
        return f"ElevenLabsTTS(voice={self.voice!r}, model={self.model!r}, url={self._url!r})"

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return  # nothing to say (a vendor would answer 400)
        body: dict[str, Any] = {"text": text, "model_id": self.model}
        if self.voice_settings:
            body["voice_settings"] = self.voice_settings
        if self.language:
            body["language_code"] = self.language
        try:
            with self._client.stream(
                "POST",
                self._url,
                params={"output_format": f"pcm_{self.sample_rate}"},
                headers={"xi-api-key": self._api_key, "accept": "audio/pcm"},
                json=body,
            ) as response:
                if response.status_code >= 300:
                    body = response.read().decode(errors="replace")
                    raise status_error("elevenlabs", response.status_code, body, response.headers)
                yield from whole_samples(response.iter_bytes(_CHUNK_BYTES))
        except httpx.HTTPError as exc:
            raise httpx_error("elevenlabs", exc) from exc
