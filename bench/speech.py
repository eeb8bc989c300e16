#!/usr/bin/env python
"""Offline speech engines measured: word errors, latency, real-time factor.

Ten sentences a caller or an agent might say are spoken by each offline
voice (espeak-ng and Piper), and each spoken sentence is transcribed by each
offline recognizer (Whisper tiny.en and PocketSphinx). Printed as Markdown
tables for the README:

- TTS: text → first PCM chunk (what a caller waits for before hearing
  anything), the whole synthesis, and the real-time factor (synthesis time /
  audio length; under 1 is faster than it is spoken). Each sentence alone,
  and a reply that starts with a short sentence (the usual shape of an
  agent's reply).
- STT: word error rate (jiwer, over all sentences, after normalizing case,
  punctuation and numbers: "2" and "two" are the same word), and latency from
  the end of the audio to the final text. Whisper only starts then (it hears
  whole utterances); PocketSphinx has heard the audio while it was spoken
  (fed here in 20 ms frames), so only its ``finish()`` counts, and the
  real-time factor of its feeding is shown beside it.

Engines are the registry's, loaded once before the clock starts (load times
are shown). Run: ``.venv/bin/python bench/speech.py [--rounds N] [--only WORD]``
(medians over rounds, default 3; ``--only`` keeps the engines whose name holds
WORD). On the 2-core machine all of it takes about three minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")

import django  # noqa: E402

django.setup()

import jiwer  # noqa: E402

from voice.speech import stt_from_config, tts_from_config  # noqa: E402
from voice.speech.registry import clear_engines  # noqa: E402

SENTENCES = [
    "Please book a table for two people tomorrow evening.",
    "I would like to cancel my order from last week.",
    "Can you send the invoice to my email address?",
    "My flight has been delayed by three hours.",
    "What time does the pharmacy close on Sunday?",
    "I need to change the delivery address for my parcel.",
    "The heating in my apartment stopped working this morning.",
    "Could you tell me the balance of my savings account?",
    "I lost my card and I want to block it right away.",
    "Thank you, that is all I needed today.",
]
REPLY = "Sure. I have booked a table for two people tomorrow at seven in the evening, near the window. Is there anything else?"
FRAME_MS = 20

TTS_ENGINES = {"espeak": {"provider": "espeak"}, "piper": {"provider": "piper"}}
STT_ENGINES = {
    "whisper tiny.en (beam 5, default)": {"provider": "whisper", "model": "tiny.en"},
    "whisper tiny.en (greedy)": {"provider": "whisper", "model": "tiny.en", "beam_size": 1},
    "whisper tiny.en (beam 5, 2 threads)": {"provider": "whisper", "model": "tiny.en", "cpu_threads": 2},
    "whisper tiny.en (beam 5, 30 s window)": {"provider": "whisper", "model": "tiny.en", "context": "full"},
    "whisper tiny.en (greedy, 30 s window)": {"provider": "whisper", "model": "tiny.en", "beam_size": 1, "context": "full"},
    "pocketsphinx (streaming)": {"provider": "pocketsphinx"},
}

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()  # noqa: E501
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return str(n)


def normalize(text: str) -> str:
    """Lower case, no punctuation, numbers as words: what WER should compare."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def measure_tts(rounds: int) -> dict[str, list[tuple[str, bytes, int]]]:
    audio: dict[str, list[tuple[str, bytes, int]]] = {}
    print("## Text to speech\n")
    print("| engine | rate | load | first chunk, one sentence (median / max) | first chunk, reply opening short | RTF |")
    print("|---|---|---|---|---|---|")
    for name, config in TTS_ENGINES.items():
        started = time.perf_counter()
        tts = tts_from_config(config)
        load = time.perf_counter() - started
        list(tts.synthesize("Warm up."))
        firsts, reply_firsts, spent, spoken = [], [], 0.0, 0.0
        audio[name] = []
        for round_ in range(rounds):
            for text in [*SENTENCES, REPLY]:
                started = time.perf_counter()
                chunks = iter(tts.synthesize(text))
                first = next(chunks)
                first_at = time.perf_counter() - started
                pcm = first + b"".join(chunks)
                spent += time.perf_counter() - started
                spoken += len(pcm) / 2 / tts.sample_rate
                (reply_firsts if text is REPLY else firsts).append(first_at)
                if round_ == 0 and text is not REPLY:
                    audio[name].append((text, pcm, tts.sample_rate))
        print(
            f"| {name} | {tts.sample_rate} Hz | {ms(load)} | {ms(statistics.median(firsts))} / {ms(max(firsts))} "
            f"| {ms(statistics.median(reply_firsts))} | {spent / spoken:.3f} |"
        )
    print()
    return audio


def feed_stream(stt, pcm: bytes, rate: int) -> tuple[str, float, float]:
    """Text, seconds spent feeding, seconds from the last frame to the final text."""
    frame = rate * 2 * FRAME_MS // 1000
    stream = stt.open_stream(rate)
    started = time.perf_counter()
    for start in range(0, len(pcm), frame):
        stream.feed(pcm[start : start + frame])
    fed = time.perf_counter()
    text = stream.finish().text
    return text, fed - started, time.perf_counter() - fed


def measure_stt(audio: dict[str, list[tuple[str, bytes, int]]], rounds: int) -> None:
    print("## Speech to text\n")
    print("| engine | voice | WER | end of audio → final text (median / max) | load |")
    print("|---|---|---|---|---|")
    for name, config in STT_ENGINES.items():
        started = time.perf_counter()
        stt = stt_from_config(config)
        load = time.perf_counter() - started
        for voice, spoken in audio.items():
            stt.transcribe(spoken[0][1], spoken[0][2])  # warm up
            references, hypotheses, latencies, feed_time, audio_time = [], [], [], 0.0, 0.0
            for round_ in range(rounds):
                for text, pcm, rate in spoken:
                    if stt.streaming:
                        heard, fed, latency = feed_stream(stt, pcm, rate)
                        feed_time += fed
                        audio_time += len(pcm) / 2 / rate
                    else:
                        started = time.perf_counter()
                        heard = stt.transcribe(pcm, rate).text
                        latency = time.perf_counter() - started
                    latencies.append(latency)
                    if round_ == 0:
                        references.append(normalize(text))
                        hypotheses.append(normalize(heard))
            wer = jiwer.wer(references, hypotheses)
            extra = f" (feeding: RTF {feed_time / audio_time:.3f})" if stt.streaming else ""
            print(
                f"| {name} | {voice} | {wer:.1%} | {ms(statistics.median(latencies))} / {ms(max(latencies))}{extra} "
                f"| {ms(load)} |"
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="measure only the recognizers whose name holds this")
    parser.add_argument("--show", action="store_true", help="print each sentence as each recognizer heard it")
    args = parser.parse_args()
    for name in [n for n in STT_ENGINES if args.only not in n]:
        del STT_ENGINES[name]
    print(f"CPU: {os.cpu_count()} cores; sentences: {len(SENTENCES)}; rounds: {args.rounds}\n")
    clear_engines()
    audio = measure_tts(args.rounds)
    measure_stt(audio, args.rounds)
    if args.show:
        for name, config in STT_ENGINES.items():
            stt = stt_from_config(config)
            for voice, spoken in audio.items():
                for text, pcm, rate in spoken:
                    print(f"{name} / {voice}: {text!r} → {stt.transcribe(pcm, rate).text!r}")


if __name__ == "__main__":
    main()
