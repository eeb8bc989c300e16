"""Speech engines: speech-to-text and text-to-speech behind two small protocols.

Audio is 16-bit little-endian mono PCM ``bytes`` with its sample rate beside it.

Getting an engine
-----------------
``stt_from_config(config)`` and ``tts_from_config(config)`` take a channel's
voice configuration (``{"provider": ..., ...}``, with ``api_key`` merged in
from the channel's secrets for cloud vendors) and return an engine. Engines
load once per distinct configuration per process and are shared: call the
factory on every turn, it is a dictionary look-up after the first time.

=============  ==========================  ======================================
kind           providers                   notes
=============  ==========================  ======================================
speech-to-text ``whisper`` (default),      Whisper tiny.en offline; PocketSphinx
               ``pocketsphinx``,           offline and streaming; OpenAI
               ``openai``, ``deepgram``    transcriptions; Deepgram live WebSocket
text-to-speech ``piper`` (default),        Piper en_US-joe-medium offline (22050 Hz);
               ``espeak``, ``openai``,     espeak-ng (22050 Hz); OpenAI pcm
               ``elevenlabs``              (24000 Hz); ElevenLabs pcm (16000 Hz)
=============  ==========================  ======================================

Speech-to-text (``SpeechToText``)
---------------------------------
- ``stt.sample_rate``: the rate the engine works at (16000 for all here).
  Send that rate and nothing is resampled.
- ``stt.transcribe(pcm, sample_rate) -> Transcript`` for a whole utterance:
  ``Transcript(text, confidence: float | None, language: str | None, duration_ms)``.
- ``stt.streaming``: true for ``pocketsphinx`` and ``deepgram``; those also
  have ``stt.open_stream(sample_rate) -> SttStream``, with
  ``stream.feed(pcm) -> list[PartialTranscript]`` (what changed; often empty),
  ``stream.finish() -> Transcript`` and ``stream.close()`` to drop it
  (a ``with`` block closes it too). ``PartialTranscript(text, stable)``
  holds the whole utterance so far.

Text-to-speech (``TextToSpeech``)
---------------------------------
- ``tts.sample_rate``: the rate of the PCM it produces (the caller resamples
  for its transport).
- ``tts.synthesize(text) -> Iterator[bytes]``: PCM chunks, whole samples, at
  least one per sentence, each yielded as soon as the engine has it. To stop
  (barge-in), stop iterating and ``close()`` the iterator, from the thread
  that was iterating it or after its last ``next()`` returned: the process or
  connection behind it is released at once.

Threads
-------
Every call blocks (models compute, vendors answer): run it in a worker
thread (``asyncio.to_thread`` or an executor sized to the cores), never on the
event loop. Engines are safe to call from many threads at once:
Whisper queues onto CTranslate2's workers, PocketSphinx lends each utterance
a decoder from a bounded pool, Piper's ONNX session runs concurrently,
espeak-ng runs a process per reply, cloud engines share a thread-safe HTTP
client. A stream or a synthesis iterator belongs to one caller: successive
calls may come from different threads, never two at once.

Errors
------
``SpeechError`` with ``retryable`` (timeouts, dropped connections, 408/409/429/5xx,
a busy decoder pool) and ``status`` when a vendor answered; ``SpeechConfigError``
(a ``SpeechError`` and a ``ValueError``, never retryable) for a configuration
that cannot work: unknown provider or option, a model or voice not installed.
Nothing is downloaded at run time: offline models come from installed packages
or paths. API keys never appear in messages or ``repr``.

Numbers (word errors, latency, real-time factor) come from ``bench/speech.py``.
"""

from voice.speech.base import (
    PartialTranscript,
    SpeechConfigError,
    SpeechError,
    SpeechToText,
    StreamingSpeechToText,
    SttStream,
    TextToSpeech,
    Transcript,
)
from voice.speech.registry import DEFAULT_STT_CONFIG, DEFAULT_TTS_CONFIG, stt_from_config, tts_from_config

__all__ = [
    "DEFAULT_STT_CONFIG",
    "DEFAULT_TTS_CONFIG",
    "PartialTranscript",
    "SpeechConfigError",
    "SpeechError",
    "SpeechToText",
    "StreamingSpeechToText",
    "SttStream",
    "TextToSpeech",
    "Transcript",
    "stt_from_config",
    "tts_from_config",
]
