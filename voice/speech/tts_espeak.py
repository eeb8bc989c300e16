"""eSpeak NG, offline formant speech: robotic, but tiny and nearly instant.

Runs Debian's ``espeak-ng`` program, one process per reply, and reads its
WAV output as it is written. A process per reply keeps engines independent
(the library keeps global state and is not thread-safe) and costs ~5 ms.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

from voice.speech.base import SpeechConfigError, SpeechError
from voice.speech.pcm import StreamResampler, WavStreamDecoder

ESPEAK_SAMPLE_RATE = 22050  # espeak-ng's native output rate
_READ_SIZE = 4410  # 100 ms at 22050 Hz


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


class ESpeakTTS:
    """Speech from espeak-ng at its native 22050 Hz.

    Safe from many threads: each ``synthesize`` runs its own process, killed
    and reaped when the iterator is closed or dropped before the end.
    """

    name = "espeak"
    sample_rate = ESPEAK_SAMPLE_RATE

    def __init__(self, *, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> None:
        binary = espeak_binary()
        if binary is None:
            raise SpeechConfigError("espeak-ng is not installed (Debian package espeak-ng)")
        self.voice = voice
        check = subprocess.run([binary, "-q", "-v", voice, "x"], capture_output=True, timeout=10)
        if check.returncode != 0:
            raise SpeechConfigError(f"espeak-ng has no voice {voice!r}: {check.stderr.decode(errors='replace').strip()}")
        self._command = [binary, "--stdout", "--stdin", "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch))]

    def synthesize(self, text: str) -> Iterator[bytes]:
        if not text.strip():
            return
        # The text goes in on stdin (``--stdin`` reads all of it before speaking), so
        # no text can pass for an option and no length limit of arguments applies.
        process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(text.encode())
            process.stdin.close()
            decoder = WavStreamDecoder()
            resampler: StreamResampler | None = None
            while chunk := os.read(process.stdout.fileno(), _READ_SIZE * 2):
                pcm = decoder.push(chunk)
                if decoder.sample_rate not in (None, self.sample_rate) and resampler is None:
                    # MBROLA voices speak at 16 kHz: one rate out of this engine whatever the voice.
                    resampler = StreamResampler(decoder.sample_rate, self.sample_rate)
                if resampler is not None:
                    pcm = resampler.push(pcm)
                if pcm:
                    yield pcm
            if resampler is not None and (tail := resampler.push(b"", last=True)):
                yield tail
            if process.wait() != 0:
                stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                raise SpeechError(f"espeak-ng exited with {process.returncode}: {stderr[:200]}", retryable=False)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
