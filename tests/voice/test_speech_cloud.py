"""Cloud speech engines against local fakes of each vendor, over real HTTP and WebSocket.

The vendors' SDK (openai) or our HTTP/WebSocket client runs its own code; the
fakes check what a vendor would check (path, auth, body, audio format) and
answer as the vendor documents, including its errors.
"""

from __future__ import annotations

import io
import json
import logging
import wave

from django.test import SimpleTestCase, tag

from tests.voice.speech_fakes import Answer, FakeDeepgram, FakeElevenLabs, FakeOpenAIAudio, multipart_fields, sine_pcm
from voice.speech import PartialTranscript, SpeechError, stt_from_config, tts_from_config
from voice.speech.registry import clear_engines

KEY = "sk-test-secret-key"


def unused_port_url(scheme: str = "http") -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}"


@tag("no_db")
class OpenAITranscriptionTests(SimpleTestCase):
    def setUp(self) -> None:
        clear_engines()

    def test_uploads_the_utterance_as_wav_with_bearer_auth_and_reads_the_text(self) -> None:
        pcm = sine_pcm(1.5, 16000)
        with FakeOpenAIAudio(transcript=" Book a table for two. ") as fake:
            stt = stt_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1", "model": "gpt-transcribe"})
            result = stt.transcribe(pcm, 16000)
        self.assertEqual(result.text, "Book a table for two.")
        self.assertEqual(result.duration_ms, 1500)
        self.assertIsNone(result.confidence)
        req = fake.requests[0]
        self.assertEqual((req.method, req.path), ("POST", "/v1/audio/transcriptions"))
        self.assertEqual(req.headers["authorization"], f"Bearer {KEY}")
        fields = multipart_fields(req)
        self.assertEqual(fields["model"][1], b"gpt-transcribe")
        self.assertEqual(fields["language"][1], b"en")
        self.assertEqual(fields["response_format"][1], b"json")
        filename, upload = fields["file"]
        self.assertTrue(filename.endswith(".wav"))
        with wave.open(io.BytesIO(upload)) as wav:
            self.assertEqual((wav.getframerate(), wav.getnchannels(), wav.getsampwidth()), (16000, 1, 2))
            self.assertEqual(wav.readframes(wav.getnframes()), pcm)

    def test_audio_at_another_rate_is_uploaded_at_16_khz(self) -> None:
        with FakeOpenAIAudio() as fake:
            stt = stt_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1"})
            result = stt.transcribe(sine_pcm(1.0, 48000), 48000)
        with wave.open(io.BytesIO(multipart_fields(fake.requests[0])["file"][1])) as wav:
            self.assertEqual((wav.getframerate(), wav.getnframes()), (16000, 16000))
        self.assertEqual(result.duration_ms, 1000)

    def test_logprobs_give_a_confidence(self) -> None:
        with FakeOpenAIAudio(transcript="yes", logprobs=[-0.1, -0.3]) as fake:
            stt = stt_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1", "logprobs": True})
            result = stt.transcribe(sine_pcm(0.5, 16000), 16000)
        self.assertEqual(multipart_fields(fake.requests[0])["include[]"][1], b"logprobs")
        self.assertAlmostEqual(result.confidence, 0.8187, places=3)

    def test_a_bad_key_is_final_and_a_rate_limit_is_retryable(self) -> None:
        with FakeOpenAIAudio(
            answers=[Answer(status=401), Answer(status=429, headers={"Retry-After": "2"}), Answer(status=503)]
        ) as fake:
            stt = stt_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1"})
            errors = []
            for _ in range(3):
                with self.assertRaises(SpeechError) as caught:
                    stt.transcribe(sine_pcm(0.2, 16000), 16000)
                errors.append(caught.exception)
        self.assertEqual([(e.status, e.retryable) for e in errors], [(401, False), (429, True), (503, True)])
        self.assertEqual(errors[1].retry_after, 2.0)
        self.assertNotIn(KEY, str(errors[0]))

    def test_no_server_is_a_retryable_connection_error(self) -> None:
        stt = stt_from_config({"provider": "openai", "api_key": KEY, "base_url": unused_port_url() + "/v1", "timeout": 2})
        with self.assertRaises(SpeechError) as caught:
            stt.transcribe(sine_pcm(0.2, 16000), 16000)
        self.assertTrue(caught.exception.retryable)
        self.assertIsNone(caught.exception.status)


@tag("no_db")
class OpenAISpeechTests(SimpleTestCase):
    def setUp(self) -> None:
        clear_engines()

    def test_asks_for_pcm_and_yields_whole_samples_as_they_stream(self) -> None:
        # Chunks cut mid-sample, as a network may cut them.
        pcm = sine_pcm(0.3, 24000)
        chunks = [pcm[:1001], pcm[1001:5000], pcm[5000:]]
        with FakeOpenAIAudio(default=Answer(chunks=chunks)) as fake:
            tts = tts_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1", "voice": "coral"})
            out = list(tts.synthesize("Your table is booked."))
        self.assertEqual(tts.sample_rate, 24000)
        self.assertEqual(b"".join(out), pcm)
        self.assertTrue(all(len(c) % 2 == 0 for c in out))
        req = fake.requests[0]
        self.assertEqual((req.method, req.path), ("POST", "/v1/audio/speech"))
        self.assertEqual(req.headers["authorization"], f"Bearer {KEY}")
        self.assertEqual(
            req.json(), {"input": "Your table is booked.", "model": "gpt-4o-mini-tts", "voice": "coral", "response_format": "pcm"}
        )

    def test_the_first_chunk_comes_before_the_body_ends(self) -> None:
        chunks = [b"\x01\x00" * 2400] * 5
        with FakeOpenAIAudio(default=Answer(chunks=chunks, chunk_delay=0.3)) as fake:
            tts = tts_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1"})
            audio = tts.synthesize("Hello.")
            self.assertEqual(next(audio), chunks[0])
            self.assertFalse(fake.stream_done.is_set())
            audio.close()
            # The response was closed: the fake's next writes fail.
            self.assertTrue(fake.client_left.wait(5))

    def test_blank_text_says_nothing_and_asks_nothing(self) -> None:
        with FakeOpenAIAudio() as openai_fake, FakeElevenLabs() as eleven_fake:
            engines = [
                tts_from_config({"provider": "openai", "api_key": KEY, "base_url": openai_fake.url + "/v1"}),
                tts_from_config({"provider": "elevenlabs", "api_key": KEY, "base_url": eleven_fake.url, "voice": "v"}),
            ]
            for tts in engines:
                self.assertEqual(list(tts.synthesize(" \n ")), [])
        self.assertEqual(openai_fake.requests + eleven_fake.requests, [])

    def test_errors_are_classified(self) -> None:
        with FakeOpenAIAudio(answers=[Answer(status=400), Answer(status=500)]) as fake:
            tts = tts_from_config({"provider": "openai", "api_key": KEY, "base_url": fake.url + "/v1"})
            with self.assertRaises(SpeechError) as bad:
                list(tts.synthesize("x"))
            with self.assertRaises(SpeechError) as down:
                list(tts.synthesize("x"))
        self.assertEqual((bad.exception.status, bad.exception.retryable), (400, False))
        self.assertEqual((down.exception.status, down.exception.retryable), (500, True))


@tag("no_db")
class ElevenLabsTests(SimpleTestCase):
    def setUp(self) -> None:
        clear_engines()

    def config(self, fake: FakeElevenLabs, **extra) -> dict:
        return {"provider": "elevenlabs", "api_key": KEY, "base_url": fake.url, "voice": "JBFqnCBsd6RMkjVDRZzb", **extra}

    def test_streams_pcm_at_the_asked_rate_with_the_key_header(self) -> None:
        pcm = sine_pcm(0.4, 16000)
        with FakeElevenLabs(default=Answer(chunks=[pcm[:333], pcm[333:7001], pcm[7001:]])) as fake:
            tts = tts_from_config(self.config(fake))
            out = list(tts.synthesize("The first move is what sets everything in motion."))
        self.assertEqual(tts.sample_rate, 16000)
        self.assertEqual(b"".join(out), pcm)
        self.assertTrue(all(len(c) % 2 == 0 for c in out))
        req = fake.requests[0]
        self.assertEqual(
            (req.method, req.path), ("POST", "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream?output_format=pcm_16000")
        )
        self.assertEqual(req.headers["xi-api-key"], KEY)
        self.assertNotIn("authorization", req.headers)
        self.assertEqual(
            req.json(), {"text": "The first move is what sets everything in motion.", "model_id": "eleven_flash_v2_5"}
        )

    def test_other_rates_and_voice_settings(self) -> None:
        with FakeElevenLabs(default=Answer(chunks=[b"\0\0" * 10])) as fake:
            tts = tts_from_config(self.config(fake, sample_rate=24000, voice_settings={"stability": 0.5}, language="fr"))
            list(tts.synthesize("Bonjour."))
        self.assertTrue(fake.requests[0].path.endswith("?output_format=pcm_24000"))
        self.assertEqual(fake.requests[0].json()["voice_settings"], {"stability": 0.5})
        self.assertEqual(fake.requests[0].json()["language_code"], "fr")

    def test_abandoned_synthesis_closes_the_response(self) -> None:
        with FakeElevenLabs(default=Answer(chunks=[b"\x02\x00" * 1600] * 10, chunk_delay=0.2)) as fake:
            audio = tts_from_config(self.config(fake)).synthesize("A long answer. " * 20)
            next(audio)
            audio.close()
            self.assertTrue(fake.client_left.wait(5))
            self.assertFalse(fake.stream_done.is_set())

    def test_4xx_is_final_429_and_5xx_retryable(self) -> None:
        answers = [Answer(status=401), Answer(status=422), Answer(status=429, headers={"Retry-After": "1"}), Answer(status=502)]
        with FakeElevenLabs(answers=answers) as fake:
            tts = tts_from_config(self.config(fake))
            seen = []
            for _ in answers:
                with self.assertRaises(SpeechError) as caught:
                    list(tts.synthesize("x"))
                seen.append((caught.exception.status, caught.exception.retryable))
        self.assertEqual(seen, [(401, False), (422, False), (429, True), (502, True)])

    def test_the_key_is_never_in_errors_nor_repr(self) -> None:
        with FakeElevenLabs(answers=[Answer(status=401)]) as fake:
            tts = tts_from_config(self.config(fake))
            with self.assertLogs(level=logging.DEBUG) as logs, self.assertRaises(SpeechError) as caught:
                logging.getLogger("voice").debug("probe")
                list(tts.synthesize("x"))
        self.assertIn("invalid_api_key", str(caught.exception))
        for text in [str(caught.exception), repr(tts), *logs.output]:
            self.assertNotIn(KEY, text)

    def test_no_server_is_retryable(self) -> None:
        tts = tts_from_config({"provider": "elevenlabs", "api_key": KEY, "base_url": unused_port_url(), "voice": "v"})
        with self.assertRaises(SpeechError) as caught:
            list(tts.synthesize("x"))
        self.assertTrue(caught.exception.retryable)


@tag("no_db")
class DeepgramTests(SimpleTestCase):
    def setUp(self) -> None:
        clear_engines()

    def stt(self, fake: FakeDeepgram, **extra):
        return stt_from_config({"provider": "deepgram", "api_key": "dg-key", "base_url": fake.url, **extra})

    def test_handshake_announces_the_audio_and_authenticates_with_a_token(self) -> None:
        with FakeDeepgram() as fake:
            with self.stt(fake).open_stream(8000) as stream:
                stream.feed(sine_pcm(0.1, 8000))
                stream.finish()
        session = fake.sessions[0]
        self.assertEqual(session.path, "/v1/listen")
        self.assertEqual(session.headers["Authorization"], "Token dg-key")
        self.assertEqual(
            session.query,
            {
                "encoding": "linear16",
                "sample_rate": "8000",
                "channels": "1",
                "model": "nova-3",
                "interim_results": "true",
                "smart_format": "true",
                "language": "en",
            },
        )
        self.assertEqual(session.control, [{"type": "CloseStream"}])

    def test_interim_then_final_results_while_audio_streams(self) -> None:
        # One word per 250 ms of audio; every third word closes a final segment.
        with FakeDeepgram(words="please book a table for two".split()) as fake:
            stream = self.stt(fake).open_stream(16000)
            frame = sine_pcm(0.05, 16000)  # 50 ms frames, as a browser sends them
            seen: list[PartialTranscript] = []
            for _ in range(30):  # 1.5 s: all six words heard
                seen.extend(stream.feed(frame))
                if len(seen) < 6:
                    # Results come back over the socket: give them a moment, as real time would.
                    import time

                    time.sleep(0.01)
            result = stream.finish()
        self.assertEqual(result.text, "please book a table for two")
        self.assertEqual(result.duration_ms, 1500)
        self.assertAlmostEqual(result.confidence, 0.9)
        self.assertEqual(bytes(fake.sessions[0].audio), frame * 30)
        texts = [(p.text, p.stable) for p in seen]
        self.assertIn(("please book", False), texts)
        self.assertIn(("please book a", True), texts)
        self.assertIn(("please book a table", False), texts)
        # Partials only grow: each holds the whole utterance so far.
        for earlier, later in zip(seen, seen[1:], strict=False):
            self.assertTrue(later.text.startswith(earlier.text) or not earlier.stable)

    def test_closestream_flushes_what_is_not_final_yet(self) -> None:
        with FakeDeepgram(words="yes please".split(), words_per_final=5) as fake:
            result = self.stt(fake).transcribe(sine_pcm(0.6, 16000), 16000)
        self.assertEqual(result.text, "yes please")
        self.assertEqual(result.language, "en")

    def test_a_rejected_handshake_is_classified_by_its_status(self) -> None:
        for status, retryable in ((401, False), (403, False), (429, True), (503, True)):
            with self.subTest(status=status), FakeDeepgram(reject_status=status) as fake:
                with self.assertRaises(SpeechError) as caught:
                    self.stt(fake).open_stream(16000)
                self.assertEqual((caught.exception.status, caught.exception.retryable), (status, retryable))

    def test_a_wrong_key_is_refused_by_the_handshake(self) -> None:
        with FakeDeepgram(api_key="the-right-one") as fake:
            with self.assertRaises(SpeechError) as caught:
                self.stt(fake).open_stream(16000)
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("INVALID_AUTH", str(caught.exception))
        self.assertNotIn("dg-key", str(caught.exception))

    def test_closes_mid_stream_are_classified_by_code(self) -> None:
        for code, retryable in ((1008, False), (1011, True)):
            with self.subTest(code=code), FakeDeepgram(close_with=(code, json.dumps({"err_code": "DATA-0000"}))) as fake:
                stream = self.stt(fake).open_stream(16000)
                with self.assertRaises(SpeechError) as caught:
                    stream.feed(sine_pcm(0.1, 16000))
                    self.assertTrue(fake.closed.wait(5))
                    stream.feed(sine_pcm(0.1, 16000))
                    stream.finish()
                self.assertEqual(caught.exception.retryable, retryable)
                self.assertIn(str(code), str(caught.exception))

    def test_closing_a_stream_closes_the_socket(self) -> None:
        with FakeDeepgram() as fake:
            stream = self.stt(fake).open_stream(16000)
            stream.feed(sine_pcm(0.1, 16000))
            stream.close()
            self.assertTrue(fake.closed.wait(5))
            self.assertEqual(fake.sessions[0].control, [])
            with self.assertRaises(SpeechError):
                stream.feed(b"\0\0")

    def test_no_server_is_retryable(self) -> None:
        stt = stt_from_config({"provider": "deepgram", "api_key": "k", "base_url": unused_port_url("ws"), "timeout": 2})
        with self.assertRaises(SpeechError) as caught:
            stt.open_stream(16000)
        self.assertTrue(caught.exception.retryable)
