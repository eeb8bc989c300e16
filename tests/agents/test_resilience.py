"""Provider failures: retry with backoff on a 500, fall back on a timeout, give up honestly."""

from __future__ import annotations

import time
from email.utils import formatdate

from django.test import TestCase, TransactionTestCase

from agents.generation import MAX_BACKOFF_SECONDS, GenerationFailed, RoomStream, provider_chain
from agents.models import GenerationStatus
from agents.providers.base import AIRequest, ChatMessage
from rooms.models import Observation
from tests.agents.fakes import FakeAnthropicServer, FakeOpenAIServer, Turn
from tests.agents.helpers import agent_replies, last_generation, make_agent, open_room, say_in
from tests.support import FakeHTTPServer


class ResilienceTests(TransactionTestCase):
    def test_a_500_is_retried_then_the_reply_goes_through(self) -> None:
        with FakeOpenAIServer([Turn(status=500), Turn(status=503), Turn(text="Third time lucky.")]) as server:
            make_agent("helper", provider="openai", base_url=server.base_url, max_retries=2, retry_base_delay_seconds=0.05)
            room_id = open_room("helper")
            say_in(room_id, "hello")
        self.assertEqual(len(server.requests), 3)
        self.assertEqual(agent_replies(room_id)[0].content["body"], "Third time lucky.")
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.provider_used), (GenerationStatus.DONE, "openai"))

    def test_a_4xx_is_not_retried(self) -> None:
        with FakeOpenAIServer(default=Turn(status=400)) as server:
            make_agent("helper", provider="openai", base_url=server.base_url, max_retries=3)
            room_id = open_room("helper")
            say_in(room_id, "hello")
        self.assertEqual(len(server.requests), 1)
        gen = last_generation(room_id)
        self.assertEqual(gen.status, GenerationStatus.FAILED)
        self.assertIn("400", gen.error)
        self.assertEqual(agent_replies(room_id), [])
        self.assertTrue(Observation.objects.filter(room_id=room_id, kind="ai_generation_failed").exists())

    def test_a_timeout_falls_back_to_the_other_provider(self) -> None:
        with (
            FakeOpenAIServer(default=Turn(text="too late", delay=1.5)) as slow,
            FakeAnthropicServer([Turn(text="Fallback here.")]) as backup,
        ):
            make_agent(
                "helper",
                provider="openai",
                base_url=slow.base_url,
                timeout_seconds=0.3,
                max_retries=1,
                fallback_provider="anthropic",
                fallback_base_url=backup.url,
            )
            room_id = open_room("helper")
            say_in(room_id, "hello")
        self.assertEqual(len(slow.requests), 2)  # the first attempt and one retry, both timed out
        self.assertEqual(len(backup.requests), 1)
        self.assertEqual(agent_replies(room_id)[0].content["body"], "Fallback here.")
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.provider_used), (GenerationStatus.DONE, "anthropic"))

    def test_when_every_provider_fails_nothing_is_posted_and_it_is_recorded(self) -> None:
        with FakeOpenAIServer(default=Turn(status=500)) as a, FakeAnthropicServer(default=Turn(status=529)) as b:
            make_agent(
                "helper",
                provider="openai",
                base_url=a.base_url,
                max_retries=1,
                fallback_provider="anthropic",
                fallback_base_url=b.url,
            )
            room_id = open_room("helper")
            say_in(room_id, "hello")
        self.assertEqual((len(a.requests), len(b.requests)), (2, 2))
        self.assertEqual(agent_replies(room_id), [])
        gen = last_generation(room_id)
        self.assertEqual(gen.status, GenerationStatus.FAILED)
        self.assertIn("anthropic attempt 2", gen.error)


class SweeperTests(TransactionTestCase):
    def test_lost_generations_are_run_again_and_a_finished_one_is_never_repeated(self) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from agents.models import Generation
        from agents.tasks import generate_reply_task, sweep_generations_task
        from rooms.infra.task_queue import enqueue
        from tests.agents.helpers import make_agent

        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        with self.settings(ROOMKIT_TASK_MODE="off"):
            say_in(room_id, "hello")  # the row is written; its task is "lost"
        gen = Generation.objects.get(room_id=room_id)
        self.assertEqual(gen.status, GenerationStatus.PENDING)
        self.assertEqual(sweep_generations_task.run(), 0)  # too recent to be lost
        Generation.objects.filter(pk=gen.pk).update(created_at=timezone.now() - timedelta(minutes=5))
        self.assertEqual(sweep_generations_task.run(), 1)
        gen.refresh_from_db()
        self.assertEqual(gen.status, GenerationStatus.DONE)
        self.assertEqual(len(agent_replies(room_id)), 1)
        enqueue(generate_reply_task, gen.id)  # a duplicate delivery of the task
        self.assertEqual(generate_reply_task.run(gen.id), "not_pending")
        self.assertEqual(len(agent_replies(room_id)), 1)
        # A worker that died mid-run: the row goes back to pending, then runs.
        Generation.objects.filter(pk=gen.pk).update(
            status=GenerationStatus.RUNNING, started_at=timezone.now() - timedelta(hours=1), reply_event=None
        )
        sweep_generations_task.run(pending_after_seconds=0)
        gen.refresh_from_db()
        self.assertEqual(gen.status, GenerationStatus.DONE)
        self.assertEqual(len(agent_replies(room_id)), 1)  # the reply's idempotency key kept it single


class RetryTimingTests(TestCase):
    """How long the engine waits between attempts: the provider chain's ``sleep`` records it
    (the real provider, SDK and HTTP run; only the waiting itself is not done)."""

    def run_chain(self, agent_id: str, **agent_fields) -> list[float]:
        chain = provider_chain(make_agent(agent_id, **agent_fields))
        request = AIRequest("You help.", [ChatMessage("user", "hello")], agent_fields.get("model", "m"))
        delays: list[float] = []
        with self.assertRaises(GenerationFailed):
            chain.stream(request, RoomStream("room-x", "stream-x", agent_id), sleep=delays.append)
        return delays

    def test_backoff_jitter_never_exceeds_the_cap(self) -> None:
        # Base 8 s doubles past the 10 s cap at once: before the fix, jitter of ±50 % around
        # the cap waited up to 15 s.
        with FakeOpenAIServer(default=Turn(status=500)) as server:
            delays = self.run_chain(
                "jittery", provider="openai", base_url=server.base_url, max_retries=30, retry_base_delay_seconds=8
            )
        self.assertEqual(len(server.requests), 31)
        self.assertEqual(len(delays), 30)
        self.assertLessEqual(max(delays), MAX_BACKOFF_SECONDS)
        self.assertGreaterEqual(delays[0], 4.0)
        self.assertGreaterEqual(min(delays[1:]), MAX_BACKOFF_SECONDS / 2)

    def test_retry_after_in_both_forms_is_honoured_and_capped_openai(self) -> None:
        self.assert_retry_after_honoured("openai", "/v1")

    def test_retry_after_in_both_forms_is_honoured_and_capped_anthropic(self) -> None:
        self.assert_retry_after_honoured("anthropic", "")

    def assert_retry_after_honoured(self, provider: str, path: str) -> None:
        error = {"error": {"message": "slow down", "type": "rate_limit_error"}, "type": "error"}
        # Answers made when each request arrives, so an HTTP-date is 6 s (or an hour) ahead of then.
        answers = [
            lambda: (429, error, {"Retry-After": "3"}),
            lambda: (503, error, {"Retry-After": formatdate(time.time() + 6, usegmt=True)}),
            lambda: (429, error, {"Retry-After": "120"}),
            lambda: (503, error, {"Retry-After": formatdate(time.time() + 3600, usegmt=True)}),
        ]
        with FakeHTTPServer(default=(500, error, {})) as server:
            server.handler = lambda req: answers.pop(0)() if answers else server.default
            delays = self.run_chain(
                f"{provider}-agent", provider=provider, base_url=server.url + path, max_retries=4, retry_base_delay_seconds=0.01
            )
        self.assertEqual(len(server.requests), 5)
        self.assertEqual(delays[0], 3.0)
        self.assertGreater(delays[1], 4.0)
        self.assertLessEqual(delays[1], 6.0)
        self.assertEqual(delays[2:], [MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS])
