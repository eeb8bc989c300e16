"""The audio pipeline for voice calls: frames in, cleaned frames and events out. No Django here.

Everything is 16-bit little-endian mono PCM in an :class:`AudioFrame`
(``pcm: bytes``, ``sample_rate: int``). A stage is anything with ``name``,
``process(frame) -> frame`` and ``reset()`` (:class:`AudioStage`); a stage that
also reports events has ``drain_events()`` (:class:`EventSource`).

Inbound (caller → STT), one per call::

    aec = SpeexEchoCanceller(16000)                          # shared with the outbound side
    inbound = inbound_pipeline(
        resampler=Resampler(8000, 16000),                    # Twilio μ-law 8k → 16k
        recorder=WavRecorder(name="recorder"),               # .start(path) / .stop() -> Recording
        aec=aec,
        agc=AutomaticGainControl(),
        denoiser=SpeexDenoiser(16000),
        vad=VoiceActivityDetector(WebRtcSpeechDetector(16000), VADConfig(end_silence_ms=600)),
        dtmf=DtmfDetector(8000),                             # a tap on the raw 8k input
        native=set(),                                        # a browser: {"aec", "agc", "denoise"}
    )
    out = inbound.process(AudioFrame(ulaw_decode(payload), 8000))
    out.frame    # cleaned 16k audio (possibly empty while a stage buffers): stream it to a streaming STT
    out.events   # SpeechStart, SpeechProbableEnd, SpeechResumed, SpeechEnd, AudioLevel, DtmfDigit

Outbound (TTS → caller)::

    outbound = outbound_pipeline(recorder=WavRecorder(name="recorder"), aec=aec, resampler=Resampler(24000, 8000))
    wire = ulaw_encode(outbound.process(AudioFrame(tts_pcm, 24000)).frame.pcm)
    tail = outbound.stage("resampler").flush()   # at the end of a reply: the last 10 ms it held back

Turn-taking uses the VAD's events (see :mod:`voice.audio.vad`): on
``speech_probable_end`` start transcribing ``event.pcm`` (and the reply); on
``speech_resumed`` drop that; ``speech_end`` confirms it, with the same bytes.

Latency from the caller's last voiced sample to ``speech_probable_end``
(measured on espeak-ng speech, 20 ms frames): the resampler holds 10 ms
(``low_latency=True``, the default; soxr's own stream mode holds 64 ms on
average, 115 at worst); the Speex denoiser delays by one 20 ms block; the
detector marks the last voiced window late by ~125 ms (WebRTC, its own
hangover), ~50 ms (Silero) or ~5 ms (energy); then ``probable_end_ms`` (200).
Twilio audio with WebRTC: ≈ 355 ms; with Silero ≈ 280 ms.

Costs per stage are in ``pipeline.timings()`` / ``pipeline.timing_summary()``;
a stage that raises is logged once and bypassed (``pipeline.bypassed``).
``bench/voice.py --part pipeline`` measures the whole inbound chain.
"""

from voice.audio.agc import AutomaticGainControl, level_dbfs
from voice.audio.denoise import RNNoiseDenoiser, SpeexDenoiser
from voice.audio.dtmf import DtmfDetector
from voice.audio.echo import SpeexEchoCanceller
from voice.audio.events import (
    AudioEvent,
    AudioLevel,
    DtmfDigit,
    SpeechEnd,
    SpeechProbableEnd,
    SpeechResumed,
    SpeechStart,
)
from voice.audio.frame import AudioFrame, BlockBuffer
from voice.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voice.audio.pipeline import Pipeline, PipelineOutput, StageTiming, inbound_pipeline, outbound_pipeline
from voice.audio.recorder import Recording, WavRecorder
from voice.audio.resample import Resampler
from voice.audio.speech_detectors import EnergySpeechDetector, SileroSpeechDetector, SpeechDetector, WebRtcSpeechDetector
from voice.audio.stage import AudioStage, EchoCanceller, EchoReference, EventSource
from voice.audio.vad import VADConfig, VoiceActivityDetector

__all__ = [
    "AudioEvent",
    "AudioFrame",
    "AudioLevel",
    "AudioStage",
    "AutomaticGainControl",
    "BlockBuffer",
    "DtmfDetector",
    "DtmfDigit",
    "EchoCanceller",
    "EchoReference",
    "EnergySpeechDetector",
    "EventSource",
    "Pipeline",
    "PipelineOutput",
    "RNNoiseDenoiser",
    "Recording",
    "Resampler",
    "SileroSpeechDetector",
    "SpeechDetector",
    "SpeechEnd",
    "SpeechProbableEnd",
    "SpeechResumed",
    "SpeechStart",
    "SpeexDenoiser",
    "SpeexEchoCanceller",
    "StageTiming",
    "VADConfig",
    "VoiceActivityDetector",
    "WavRecorder",
    "WebRtcSpeechDetector",
    "alaw_decode",
    "alaw_encode",
    "inbound_pipeline",
    "level_dbfs",
    "outbound_pipeline",
    "ulaw_decode",
    "ulaw_encode",
]
