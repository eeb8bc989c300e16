"""Phone calls through Twilio: the voice webhook's TwiML, and whole calls on ``/ws/twilio/<channel_id>/``.

The test plays Twilio from its documentation: the incoming-call webhook
(fixtures/twilio/voice_call.json) signed as Twilio signs
(``tests.channels_app.fakes.twilio``, written from the documentation), the
stream opened on the URL the TwiML names, with a signed handshake and no
``Origin``, and the Media Streams messages of fixtures/twilio/media_streams.json,
the caller's audio being espeak-ng speech in μ-law, 20 ms a message. The
socket runs in the project's ASGI application; transcription is Whisper and
speech synthesis espeak-ng: the offline stack, no fakes.

Times of the call are stream times: how much of the caller's audio the
application had taken when it sent something.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import numpy as np
import soxr
from asgiref.sync import sync_to_async
from django.core import signing
from django.test import SimpleTestCase, TestCase, TransactionTestCase, override_settings

from channels_app.providers.twilio.calls import PARAM_TOKEN, stream_token_issue, stream_token_verify, verify_stream_handshake
from channels_app.services_channels import channel_settings_errors
from channels_app.webchat.sessions import chat_session_start
from rooms.enums import ChannelType, EventType, Visibility
from rooms.errors import NotFound
from rooms.hooks import HookTrigger
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding, Delivery, RoomEvent
from tests.channels_app.fakes.twilio import post_as_twilio, twilio_signature
from tests.channels_app.helpers import error_of, row_counts
from tests.rooms.fixtures import use_hook
from tests.support import make_channel
from tests.voice.audio_samples import rms_dbfs, silence, speech
from tests.voice.sockets import SocketWatch
from tests.voice.twilio_fixtures import payload_samples, stream_message, ulaw_payload, voice_call_form

BASE = "https://roomkit.example.test"
ACCOUNT = "AC00000000000000000000000000000001"
TOKEN = "3f5d2c1b0a9e8d7c6b5a4f3e2d1c0b9a"
NUMBER = "+15558675310"  # the channel's number: "To" in the fixture
CALLER = "+14155550123"  # "From" in the fixture
CHANNEL = "tw-voice"
WEBHOOK = f"/webhooks/{CHANNEL}/"
STREAM_URL = "wss://roomkit.example.test/ws/twilio/tw-voice/"
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
VOICE = {
    "stt": {"provider": "whisper"},
    "tts": {"provider": "espeak"},
    "interruption": "confirmed",
    "interrupt_min_speech_ms": 300,
}
# Long enough (8 s) that the caller is still hearing it when they talk over it, however slow the machine.
REPLY_SENTENCES = [
    "Your order ships tomorrow.",
    "It will arrive on Friday before noon, at the address on your account.",
    "You will get a text message when the driver is on the way.",
]
REPLY_FIRST_SENTENCE = REPLY_SENTENCES[0]
REPLY = " ".join(REPLY_SENTENCES)


def twilio_voice_channel(**config: Any):
    return make_channel(
        CHANNEL,
        channel_type=ChannelType.VOICE,
        provider="twilio",
        config={"account_sid": ACCOUNT, "from": NUMBER, "voice": VOICE, **config},
        secrets={"auth_token": TOKEN},
    )


def stream_in(response) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream>`` of a TwiML answer: its URL and its ``<Parameter>``s."""
    root = ET.fromstring(response.content)
    [connect] = list(root)
    [stream] = list(connect)
    if (root.tag, connect.tag, stream.tag) != ("Response", "Connect", "Stream"):
        raise AssertionError(f"not <Response><Connect><Stream>: {response.content!r}")
    return stream.get("url", ""), {p.get("name", ""): p.get("value", "") for p in stream if p.tag == "Parameter"}


@override_settings(PUBLIC_BASE_URL=BASE)
class VoiceWebhookTests(TestCase):
    def setUp(self) -> None:
        twilio_voice_channel()

    def post(self, form: dict[str, Any], **kwargs: Any):
        with self.captureOnCommitCallbacks(execute=True):
            return post_as_twilio(self.client, WEBHOOK, form, **kwargs)

    def test_a_signed_call_is_answered_with_a_stream_to_its_socket_and_nothing_is_stored(self) -> None:
        form = voice_call_form()
        before = row_counts()

        response = self.post(form, auth_token=TOKEN)

        self.assertEqual(response.status_code, 200, response.content[:300])
        self.assertTrue(response["Content-Type"].startswith("text/xml"), response["Content-Type"])
        url, parameters = stream_in(response)
        self.assertEqual(url, STREAM_URL)
        self.assertEqual(
            {k: v for k, v in parameters.items() if k != PARAM_TOKEN}, {"From": CALLER, "To": NUMBER, "CallSid": form["CallSid"]}
        )
        claims = stream_token_verify(parameters[PARAM_TOKEN], channel_id=CHANNEL, call_sid=form["CallSid"])
        self.assertEqual((claims.caller, claims.called), (CALLER, NUMBER))
        self.assertEqual(row_counts(), before, "the webhook answers; the call's socket stores")

    def test_unsigned_forged_or_foreign_calls_are_refused_and_nothing_is_stored(self) -> None:
        before = row_counts()
        error_of(self, self.post(voice_call_form(), auth_token=None), 403, "invalid_signature")
        error_of(self, self.post(voice_call_form(), auth_token="another account's token"), 403, "invalid_signature")
        # Signed with this channel's token, but for another account.
        foreign = voice_call_form() | {"AccountSid": "AC99999999999999999999999999999999"}
        error_of(self, self.post(foreign, auth_token=TOKEN), 403, "wrong_account")
        self.assertEqual(row_counts(), before)

    def test_call_progress_callbacks_are_acknowledged_and_store_nothing(self) -> None:
        form = voice_call_form() | {"CallStatus": "completed", "CallDuration": "42"}
        before = row_counts()
        with self.captureOnCommitCallbacks(execute=True):
            response = post_as_twilio(self.client, WEBHOOK + "status/", form, auth_token=TOKEN)
        self.assertEqual(response.status_code, 200, response.content[:300])
        self.assertEqual(row_counts(), before)

    def test_a_phone_line_takes_no_browser_sessions(self) -> None:
        # As if no such channel: there is no browser channel by that name (404).
        with self.assertRaises(NotFound):
            chat_session_start(display_name="Visitor", channel_id=CHANNEL)

    def test_a_voice_channel_needs_an_account_and_its_token_but_no_sender(self) -> None:
        config = {"account_sid": ACCOUNT}
        self.assertEqual(
            channel_settings_errors(channel_type="voice", provider="twilio", config=config, secret_names=["auth_token"]), []
        )
        sms = channel_settings_errors(channel_type="sms", provider="twilio", config=config, secret_names=["auth_token"])
        self.assertEqual([field for field, _ in sms], ["config.from"])
        missing = channel_settings_errors(channel_type="voice", provider="twilio", config={}, secret_names=[])
        self.assertEqual([field for field, _ in missing], ["config.account_sid", "secrets.auth_token"])
        # Its voice settings are checked as a browser voice channel's are.
        bad = channel_settings_errors(
            channel_type="voice", provider="twilio", config={**config, "voice": {"detector": "nope"}}, secret_names=["auth_token"]
        )
        self.assertEqual(bad, [("config.voice", "detector must be one of webrtc, silero, energy")])


class StreamTokenTests(TestCase):
    CALL = "CA5f9e2d8c1b0a4e3d2c1b0a9f8e7d6c5b"

    def test_the_token_vouches_for_its_channel_call_and_caller_only_for_a_while(self) -> None:
        token = stream_token_issue(channel_id=CHANNEL, call_sid=self.CALL, caller=CALLER, called=NUMBER)

        self.assertEqual(stream_token_verify(token, channel_id=CHANNEL, call_sid=self.CALL).caller, CALLER)
        self.assertIsNone(stream_token_verify(token, channel_id="other-voice", call_sid=self.CALL))
        self.assertIsNone(stream_token_verify(token, channel_id=CHANNEL, call_sid="CA" + "1" * 32))
        forged = signing.dumps({"ch": CHANNEL, "call": self.CALL, "from": "+15550000000"}, salt="another salt", compress=True)
        self.assertIsNone(stream_token_verify(forged, channel_id=CHANNEL, call_sid=self.CALL))
        self.assertIsNone(stream_token_verify("", channel_id=CHANNEL, call_sid=self.CALL))
        later = time.time() + 121
        with mock.patch("django.core.signing.time.time", return_value=later):
            self.assertIsNone(stream_token_verify(token, channel_id=CHANNEL, call_sid=self.CALL))


class HandshakeSignatureTests(SimpleTestCase):
    def test_twilio_signs_the_stream_url_with_the_account_token(self) -> None:
        signature = twilio_signature(STREAM_URL, {}, TOKEN)

        self.assertTrue(verify_stream_handshake(STREAM_URL, signature, TOKEN))
        self.assertTrue(
            verify_stream_handshake(STREAM_URL, twilio_signature(STREAM_URL.replace("wss", "https", 1), {}, TOKEN), TOKEN)
        )
        self.assertFalse(verify_stream_handshake(STREAM_URL, signature, "another account's token"))
        self.assertFalse(verify_stream_handshake("wss://roomkit.example.test/ws/twilio/other/", signature, TOKEN))
        self.assertFalse(verify_stream_handshake(STREAM_URL, "", TOKEN))


class _TwilioStream(SocketWatch):
    """Twilio's side of one Media Stream on the project's ASGI application."""

    def __init__(self, url: str, *, signature: str | None, stream_sid: str = STREAM_SID) -> None:
        super().__init__()
        parts = urlsplit(url)
        self.path, self.host = parts.path, parts.netloc
        self.signature = signature
        self.stream_sid = stream_sid
        self.received: list[tuple[float, dict[str, Any]]] = []  # (stream ms taken by the app when it sent it, message)
        self.accepted = False
        self.closed: int | None = None
        self.taken_ms = 0.0  # the caller's audio the application has taken
        self.sent_ms = 0.0  # the caller's audio queued for it
        self._sequence = 0
        self._chunk = 0
        self._inbox: asyncio.Queue[tuple[dict[str, Any], float]] = asyncio.Queue()

    async def open(self) -> None:
        from roomkit_project.asgi import application

        headers = [(b"host", self.host.encode())]  # Twilio's servers send no Origin
        if self.signature is not None:
            headers.append((b"x-twilio-signature", self.signature.encode()))
        scope = {
            "type": "websocket",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("54.172.60.1", 40000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }
        self.app = asyncio.ensure_future(application(scope, self._receive, self._send))
        await self._inbox.put(({"type": "websocket.connect"}, 0.0))

    async def _receive(self) -> dict[str, Any]:
        message, audio_ms = await self._inbox.get()
        self.taken_ms += audio_ms
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            self.accepted = True
        elif message["type"] == "websocket.send":
            self.received.append((self.taken_ms, json.loads(message["text"])))
        elif message["type"] == "websocket.close":
            self.closed = message.get("code", 1000)
        self.changed()

    def twilio(self, kind: str, audio_ms: float = 0.0, **fields: Any) -> dict[str, Any]:
        """Send Twilio's documented message of ``kind``, numbered as Twilio numbers them, with ``fields`` changed."""
        message = stream_message(kind, stream_sid=self.stream_sid)
        if "sequenceNumber" in message:
            self._sequence += 1
            message["sequenceNumber"] = str(self._sequence)
        for key, value in fields.items():
            message[key] = value if not isinstance(value, dict) else message[key] | value
        self._inbox.put_nowait(({"type": "websocket.receive", "text": json.dumps(message)}, audio_ms))
        return message

    async def speak(self, pcm8k: np.ndarray) -> None:
        """The caller's audio as Twilio sends it: 20 ms ``media`` messages."""
        for i in range(0, len(pcm8k), 160):
            frame = pcm8k[i : i + 160]
            self._chunk += 1
            media = {"chunk": str(self._chunk), "timestamp": str(int(self.sent_ms)), "payload": ulaw_payload(frame)}
            self.twilio("media", audio_ms=len(frame) / 8, media=media)
            self.sent_ms += len(frame) / 8
            await asyncio.sleep(0)

    def describe(self) -> str:
        return f"last messages: {[m['event'] for _, m in self.received[-8:]]}"

    async def quiet_for(self, seconds: float) -> None:
        """Until the application has sent nothing for ``seconds``."""
        while True:
            count = len(self.received)
            await asyncio.sleep(seconds)
            if len(self.received) == count:
                return

    def sent(self, event: str, after: int = 0) -> list[dict[str, Any]]:
        return [m for _, m in self.received[after:] if m["event"] == event]

    async def hang_up(self) -> None:
        await self._inbox.put(({"type": "websocket.disconnect", "code": 1000}, 0.0))
        await asyncio.wait_for(self.app, 15)


async def until(check, what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` (a database read, run off the loop) until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        found = await sync_to_async(check)()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(0.05)


def marks_with_positions(messages: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Each mark sent, with how much audio (ms) was sent before it."""
    marks, sent_ms = [], 0.0
    for message in messages:
        if message["event"] == "media":
            sent_ms += 20
        elif message["event"] == "mark":
            marks.append((message["mark"]["name"], sent_ms))
    return marks


def caller_messages() -> list[RoomEvent]:
    return list(
        RoomEvent.objects.filter(source_channel_id=CHANNEL, type=EventType.MESSAGE)
        .select_related("source_participant")
        .order_by("seq")
    )


@override_settings(PUBLIC_BASE_URL=BASE)
class TwilioCallTest(TransactionTestCase):
    def setUp(self) -> None:
        twilio_voice_channel()
        make_channel("ops-api", channel_type=ChannelType.API)
        self.hooks: dict[str, list[dict[str, Any]]] = {"dtmf": [], "barge_in": [], "after_tts": []}
        for trigger, key in (
            (HookTrigger.ON_DTMF, "dtmf"),
            (HookTrigger.ON_BARGE_IN, "barge_in"),
            (HookTrigger.AFTER_TTS, "after_tts"),
        ):
            use_hook(self, trigger, lambda payload, ctx, key=key: self.hooks[key].append(payload))

    def answer_call(self) -> tuple[str, dict[str, str]]:
        """Twilio's incoming-call webhook, signed: the stream's URL and parameters from our TwiML."""
        response = post_as_twilio(self.client, WEBHOOK, voice_call_form(), auth_token=TOKEN)
        self.assertEqual(response.status_code, 200, response.content[:300])
        return stream_in(response)

    async def start(self, url: str, parameters: dict[str, str], **kwargs: Any) -> _TwilioStream:
        stream = _TwilioStream(url, signature=twilio_signature(url, {}, TOKEN), **kwargs)
        await stream.open()
        await stream.wait_for(lambda: stream.accepted or stream.closed is not None, "the handshake")
        stream.twilio("connected")
        stream.twilio(
            "start",
            start={"callSid": parameters["CallSid"], "streamSid": stream.stream_sid, "customParameters": parameters},
        )
        return stream

    def test_a_phone_call_is_heard_answered_interrupted_and_ended(self) -> None:
        url, parameters = self.answer_call()
        said = speech("I want to know when my order will arrive.", 8000)
        interruption = speech("Excuse me, I have a different question.", 8000, level_dbfs=-12.0)
        numbers: dict[str, float] = {}

        async def call() -> _TwilioStream:
            stream = await self.start(url, parameters)
            self.assertTrue(stream.accepted)
            await stream.speak(np.concatenate([silence(300, 8000), said, silence(1200, 8000)]))
            turn = await until(lambda: caller_messages()[:1], "the caller's turn stored")
            self.assertEqual(turn[0].source_participant.address, CALLER)
            room_id = turn[0].room_id

            # Someone else in the room answers: the caller hears it.
            await sync_to_async(process_inbound)(
                InboundMessage(channel_id="ops-api", room_id=room_id, sender="operator", text=REPLY)
            )
            await stream.wait_for(lambda: len(self.hooks["after_tts"]) == len(REPLY_SENTENCES), "every sentence spoken")
            await stream.wait_for(lambda: stream.received and stream.received[-1][1]["event"] == "mark", "the last mark")
            await stream.quiet_for(0.3)
            reply = list(stream.received)
            marks = marks_with_positions([m for _, m in reply])

            # Twilio has played the first sentence and a little more: it echoes the marks up to there.
            first_sentence_ms = len(self.espeak_at_8k(REPLY_FIRST_SENTENCE)) / 8
            heard = [(name, at) for name, at in marks if at < first_sentence_ms + 40]
            heard.append(marks[len(heard)])
            for name, _ in heard:
                stream.twilio("mark", mark={"name": name})
            numbers["heard_ms"] = heard[-1][1]

            # While the rest plays, the caller talks over it, loudly.
            await stream.speak(silence(200, 8000))
            numbers["onset_ms"] = stream.sent_ms
            await stream.speak(interruption)
            clear = await stream.wait_for(lambda: stream.sent("clear", after=len(reply)), "a clear")
            numbers["clear_at_ms"] = next(at for at, m in stream.received[len(reply) :] if m["event"] == "clear")
            self.assertEqual(clear[0], stream_message("clear", stream_sid=STREAM_SID, direction="to_twilio"))
            # Twilio empties its buffer and echoes the marks it still held.
            for name, _ in marks[len(heard) :]:
                stream.twilio("mark", mark={"name": name})
            await stream.speak(silence(1200, 8000))
            await until(lambda: len(caller_messages()) == 2, "the interruption stored as the caller's next turn")

            # Keys pressed: Twilio reports them; the session gives them to the agent after "#".
            stream.twilio("dtmf", dtmf={"digit": "5"})
            stream.twilio("dtmf", dtmf={"digit": "#"})
            await stream.wait_for(lambda: len(self.hooks["dtmf"]) == 2, "ON_DTMF for both keys")
            await until(lambda: len(caller_messages()) == 3, "the keys stored as the caller's turn")
            self.assertEqual(stream.sent("media", after=len(reply)), [], "playback stopped at the clear")

            stream.twilio("stop")
            await stream.wait_for(lambda: stream.closed is not None, "the socket closed after stop")
            await stream.hang_up()
            numbers["reply"] = len(reply)
            return stream

        stream = asyncio.run(call())
        reply = [m for _, m in stream.received[: int(numbers["reply"])]]

        # What the caller said is the room's: stored from their number, on this channel.
        first, second, keys = caller_messages()
        self.assertIn("order", first.content["body"].lower())
        self.assertIn("arrive", first.content["body"].lower())
        self.assertEqual((first.source_participant.address, first.source_participant.channel_id), (CALLER, CHANNEL))
        self.assertIn("question", second.content["body"].lower())
        self.assertEqual((keys.content["body"], keys.metadata["voice"]["dtmf"]), ("Keypad: 5", "5"))
        binding = ChannelBinding.objects.get(channel_id=CHANNEL, room_id=first.room_id)
        self.assertEqual(binding.address, CALLER)
        self.assertFalse(Delivery.objects.filter(channel_id=CHANNEL).exists(), "a call hears the room on its socket")

        # The reply: 20 ms media messages for this stream, a mark after each chunk, speech at its level.
        media = [m for m in reply if m["event"] == "media"]
        self.assertGreater(len(media), 50)
        self.assertTrue(all(m["streamSid"] == STREAM_SID for m in reply))
        self.assertTrue(all(len(payload_samples(m["media"]["payload"])) == 160 for m in media))
        events = [m["event"] for m in reply]
        self.assertEqual((events[0], events[-1]), ("media", "mark"))
        self.assertNotIn(("mark", "mark"), list(zip(events, events[1:], strict=False)), "a mark follows speech")
        self.assertGreater(events.count("mark"), 5)
        heard = np.concatenate([payload_samples(m["media"]["payload"]) for m in media])
        spoken = self.espeak_at_8k(REPLY)
        self.assertAlmostEqual(rms_dbfs(heard), rms_dbfs(spoken), delta=0.5)

        # Barge-in: the clear came within 200 ms (stream time) of the 300 ms the confirmed strategy waits for.
        confirmed_at = numbers["onset_ms"] + VOICE["interrupt_min_speech_ms"]
        latency = numbers["clear_at_ms"] - confirmed_at
        self.assertGreater(numbers["clear_at_ms"], numbers["onset_ms"])
        self.assertLessEqual(latency, 200, numbers)
        [barge_in] = self.hooks["barge_in"]
        self.assertEqual(barge_in["heard_ms"], numbers["heard_ms"], "what the caller heard: up to the last echoed mark")
        self.assertGreater(barge_in["played_ms"], barge_in["heard_ms"] + 1000)
        # ... and so what they heard of the reply: its first sentence, which the agents' memory keeps.
        reply_event = RoomEvent.objects.get(source_channel_id="ops-api")
        note = RoomEvent.objects.get(room_id=first.room_id, type=EventType.NOTE)
        self.assertEqual(note.metadata["voice"], {"heard_event_id": reply_event.id, "heard_text": REPLY_FIRST_SENTENCE})
        self.assertEqual([p["digit"] for p in self.hooks["dtmf"]], ["5", "#"])

        # The call's start and end are in the room, for operators.
        started, ended = RoomEvent.objects.filter(room_id=first.room_id, type=EventType.SYSTEM).order_by("seq")
        self.assertEqual((started.content["code"], ended.content["code"]), ("call_started", "call_ended"))
        self.assertEqual(started.content["data"]["call_id"], parameters["CallSid"])
        self.assertEqual(started.content["data"]["to"], NUMBER)
        self.assertEqual(ended.content["data"]["reason"], "stop")
        self.assertEqual({started.visibility, ended.visibility}, {Visibility.INTERNAL})
        self.assertLess(started.seq, first.seq)
        self.assertGreater(ended.seq, keys.seq)

    @staticmethod
    def espeak_at_8k(text: str) -> np.ndarray:
        from voice.speech.tts_espeak import ESpeakTTS

        tts = ESpeakTTS()
        # Sentence by sentence, as the call speaks a message.
        pcm = b"".join(b"".join(tts.synthesize(sentence)) for sentence in re.split(r"(?<=[.!?])\s+", text))
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        return soxr.resample(x, tts.sample_rate, 8000, quality="HQ")

    def test_a_second_call_from_the_number_finds_its_room(self) -> None:
        rooms = []
        for call_sid in ("CA" + "1" * 32, "CA" + "2" * 32):
            form = voice_call_form() | {"CallSid": call_sid}
            response = post_as_twilio(self.client, WEBHOOK, form, auth_token=TOKEN)
            url, parameters = stream_in(response)

            async def call(url: str = url, parameters: dict[str, str] = parameters) -> None:
                stream = await self.start(url, parameters)
                stream.twilio("stop", stop={"callSid": parameters["CallSid"]})
                await stream.wait_for(lambda: stream.closed is not None, "the end of the call")
                await stream.hang_up()

            asyncio.run(call())
            started = RoomEvent.objects.get(content__code="call_started", content__data__call_id=call_sid)
            rooms.append(started.room_id)
        self.assertEqual(rooms[0], rooms[1])
        codes = list(RoomEvent.objects.filter(room_id=rooms[0]).order_by("seq").values_list("content__code", flat=True))
        self.assertEqual(codes, ["call_started", "call_ended", "call_started", "call_ended"])

    def test_a_stream_nobody_signed_for_is_refused(self) -> None:
        url, parameters = self.answer_call()
        before = row_counts()

        async def attempts() -> list[_TwilioStream]:
            # A handshake signed with another token: refused before the socket opens.
            forged = _TwilioStream(url, signature=twilio_signature(url, {}, "another account's token"))
            await forged.open()
            await forged.wait_for(lambda: forged.closed is not None, "a refusal")
            await forged.hang_up()
            # No signature, and a caller's number the token does not vouch for: refused at start.
            unsigned = _TwilioStream(url, signature=None)
            await unsigned.open()
            await unsigned.wait_for(lambda: unsigned.accepted, "the handshake")
            unsigned.twilio("connected")
            impostor = parameters | {"From": "+15550000000", PARAM_TOKEN: parameters[PARAM_TOKEN][:-2] + "xx"}
            unsigned.twilio("start", start={"callSid": parameters["CallSid"], "customParameters": impostor})
            await unsigned.wait_for(lambda: unsigned.closed is not None, "a refusal at start")
            await unsigned.hang_up()
            return [forged, unsigned]

        forged, unsigned = asyncio.run(attempts())
        self.assertFalse(forged.accepted)
        self.assertEqual(unsigned.closed, 4403)
        self.assertEqual(row_counts(), before, "a refused stream stores nothing")

    def test_an_unsigned_handshake_with_our_token_is_taken(self) -> None:
        url, parameters = self.answer_call()

        async def call() -> None:
            stream = _TwilioStream(url, signature=None)
            await stream.open()
            await stream.wait_for(lambda: stream.accepted, "the handshake")
            stream.twilio("connected")
            stream.twilio("start", start={"callSid": parameters["CallSid"], "customParameters": parameters})
            stream.twilio("stop")
            await stream.wait_for(lambda: stream.closed is not None, "the end of the call")
            await stream.hang_up()

        asyncio.run(call())
        started = RoomEvent.objects.get(source_channel_id=CHANNEL, content__code="call_started")
        self.assertEqual(started.source_participant.address, CALLER)
