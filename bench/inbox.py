#!/usr/bin/env python
"""The operators' inbox at scale: the list's server time over 10,000 rooms, and how fast a message reaches it.

1. **List time.** 10,000 conversations with 200,000 events (customers on SMS,
   the team's replies, assignees, statuses, labels), written with bulk inserts.
   The list (``/admin/inbox/list/``, as htmx asks for it) is requested in
   this process through Django's test client: server time from request to
   rendered response, database included, no network. Each filter the inbox
   offers, and the page with a conversation open; p50 / p95 and the queries.
2. **Live update.** A real server (``manage.py serve``) and an operator's list
   socket (``/ws/staff/rooms/``, the page's own). A customer's Twilio-signed
   SMS is posted; measured are the ``room_activity`` frame on the socket and
   the re-read list having the message in its top row (what the page does on
   that frame, after its 60 ms burst window).

Run: ``.venv/bin/python bench/inbox.py [--db pg|sqlite] [--rooms 10000] [--events 200000]``.
PostgreSQL uses a scratch database ``roomkit_bench_inbox`` on 127.0.0.1:5432 and
Redis database 13 on 127.0.0.1:6379 (the scaled setup); ``sqlite`` the embedded default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, percentile, prepare_database, project_env  # noqa: E402

ACCOUNT_SID = "AC" + "c" * 32
AUTH_TOKEN = "bench-inbox-auth-token-0123456789"
OUR_NUMBER = "+15005550006"
REDIS_URL = "redis://127.0.0.1:6379/13"
FIRST = ["Maria", "John", "Aiko", "Lena", "Omar", "Priya", "Tom", "Sofia", "Chen", "Ana", "Yusuf", "Eva", "Liam", "Noor"]
LAST = ["Lopez", "Smith", "Tanaka", "Weber", "Haddad", "Patel", "Brown", "Rossi", "Wang", "Silva", "Kaya", "Novak"]
CUSTOMER_LINES = [
    "Where is my order {n}?",
    "I would like a refund for order {n}",
    "Can I change my delivery address?",
    "The parcel arrived damaged, what now?",
    "Do you ship to Canada?",
    "My invoice {n} shows the wrong amount",
    "How do I reset my password?",
    "Is the blue jacket back in stock?",
]
TEAM_LINES = [
    "Thanks, let me check order {n} for you.",
    "Your refund is on its way: 3 to 5 working days.",
    "I have updated the address on your order.",
    "Sorry about that! I am sending a replacement.",
]


def _project(db: str, tmp: Path) -> dict[str, str]:
    url = prepare_database(db, "roomkit_bench_inbox")
    env = project_env(url, REDIS_URL if db == "pg" else "", "http://127.0.0.1:8000", tmp / "media")
    env["ROOMKIT_TASK_MODE"] = "off"
    if db == "pg":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    if db != "pg":
        os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    return env


def _populate(rooms: int, events: int) -> dict:
    """Bulk-insert the conversations; returns what the measurements need."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from rooms.console.actions import console_channel, console_groups_ensure
    from rooms.enums import ChannelType, ConversationStatus, Direction, EventType, ParticipantRole
    from rooms.models import Channel, ChannelBinding, Label, Participant, Room, RoomEvent

    console_groups_ensure()
    from django.contrib.auth.models import Group

    users = []
    for name in ("olga", "oscar", "otto"):
        user = get_user_model().objects.create_user(name, f"{name}@example.com", "x", is_staff=True)
        user.groups.add(Group.objects.get(name="operator"))
        users.append(user)
    sms = Channel.objects.create(
        id="bench-sms", channel_type=ChannelType.SMS, provider="twilio", config={"account_sid": ACCOUNT_SID, "from": OUR_NUMBER}
    )
    sms.set_secrets({"auth_token": AUTH_TOKEN})
    sms.save()
    console = console_channel()
    vip = Label.objects.create(name="vip")
    rng = random.Random(7)
    now = timezone.now()
    per_room = max(1, events // rooms)
    statuses = [ConversationStatus.OPEN] * 7 + [
        ConversationStatus.PENDING,
        ConversationStatus.SNOOZED,
        ConversationStatus.RESOLVED,
    ]
    started = time.perf_counter()
    phones = []
    with transaction.atomic():
        room_rows, people, bindings, operators_seen = [], [], [], []
        for i in range(rooms):
            when = now - timedelta(minutes=rng.randint(0, 30 * 24 * 60))
            status = rng.choice(statuses)
            assignee = rng.choice([*users, None, None])
            room_rows.append(
                Room(
                    id=f"r{i:06d}",
                    last_seq=per_room,
                    last_activity_at=when,
                    conversation_status=status,
                    snoozed_until=now + timedelta(days=1) if status == ConversationStatus.SNOOZED else None,
                    assignee=assignee,
                )
            )
            phone = f"+1415{i:07d}"
            phones.append(phone)
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            people.append(Participant(id=f"p{i:06d}", room_id=f"r{i:06d}", channel=sms, address=phone, display_name=name))
            operators_seen.append(
                Participant(
                    id=f"o{i:06d}",
                    room_id=f"r{i:06d}",
                    channel=console,
                    address="olga",
                    display_name="Olga",
                    role=ParticipantRole.OPERATOR,
                )
            )
            bindings.append(ChannelBinding(room_id=f"r{i:06d}", channel=sms, address=phone, participant_id=f"p{i:06d}"))
        Room.objects.bulk_create(room_rows, batch_size=2000)
        Participant.objects.bulk_create(people + operators_seen, batch_size=2000)
        ChannelBinding.objects.bulk_create(bindings, batch_size=2000)
        Room.labels.through.objects.bulk_create(
            [Room.labels.through(room_id=f"r{i:06d}", label_id=vip.pk) for i in range(0, rooms, 20)], batch_size=2000
        )
        batch = []
        for i in range(rooms):
            base = room_rows[i].last_activity_at - timedelta(minutes=per_room)
            for seq in range(1, per_room + 1):
                customer = seq % 2 == 1
                line = rng.choice(CUSTOMER_LINES if customer else TEAM_LINES).format(n=rng.randint(1000, 9999))
                batch.append(
                    RoomEvent(
                        room_id=f"r{i:06d}",
                        seq=seq,
                        type=EventType.MESSAGE,
                        direction=Direction.INBOUND,
                        source_channel=sms if customer else console,
                        source_participant_id=f"p{i:06d}" if customer else f"o{i:06d}",
                        content={"type": "text", "body": line},
                        created_at=base + timedelta(minutes=seq),
                    )
                )
            if len(batch) >= 5000:
                RoomEvent.objects.bulk_create(batch)
                batch = []
        RoomEvent.objects.bulk_create(batch)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    print(f"populated {rooms} rooms, {rooms * per_room} events in {time.perf_counter() - started:.1f} s", flush=True)
    return {"users": users, "phones": phones, "sms": sms}


def _measure_list(user, requests: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "rk-inbox-list"}
    cases = [
        ("open, all (the default)", "/admin/inbox/list/", {}),
        ("mine", "/admin/inbox/list/", {"view": "mine"}),
        ("unassigned", "/admin/inbox/list/", {"view": "unassigned"}),
        ("resolved", "/admin/inbox/list/", {"status": "resolved"}),
        ("label vip", "/admin/inbox/list/", {"label": "vip", "status": "any"}),
        ("channel sms", "/admin/inbox/list/", {"channel": "sms"}),
        ("search a word in messages", "/admin/inbox/list/", {"q": "damaged", "status": "any"}),
        ("search two word prefixes", "/admin/inbox/list/", {"q": "refu ord", "status": "any"}),
        ("search a name", "/admin/inbox/list/", {"q": "Tanaka", "status": "any"}),
        ("search a phone number", "/admin/inbox/list/", {"q": "+14150004242", "status": "any"}),
        ("the page, a conversation open", "/admin/inbox/c/r000042/", {}),
    ]
    print(f"\n{'request':<34} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'rows':>6}")
    for label, path, params in cases:
        for _ in range(3):
            client.get(path, params, **headers)
        connection.queries_log.clear()  # a full log (DEBUG keeps the last 9,000) would count nothing
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path, params, **headers)
        queries = len(ctx.captured_queries)  # now: the slice is read from the live log
        assert response.status_code == 200, (label, response.status_code, response.content[:300])
        rows = response.content.decode().count('<li class="rk-inbox-row')
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            client.get(path, params, **headers)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"{label:<34} {percentile(times, 50):8.1f} {percentile(times, 95):8.1f} {queries:8d} {rows:6d}")


def _measure_live(env: dict[str, str], user, phones: list[str], rounds: int) -> None:
    import httpx
    from django.conf import settings
    from django.test import Client
    from twilio.request_validator import RequestValidator

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**env, "PUBLIC_BASE_URL": base}
    log = open(Path(tempfile.mkdtemp()) / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-workers", "--port", str(port)],
        cwd=ROOT,
        env=server_env,
        stdout=log,
        stderr=log,
    )
    try:
        client = Client()
        client.force_login(user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        asyncio.run(_live_rounds(base, port, cookie, phones, rounds, RequestValidator(AUTH_TOKEN)))
    finally:
        server.terminate()
        server.wait(10)


async def _live_rounds(base: str, port: int, cookie: str, phones: list[str], rounds: int, validator) -> None:
    import json

    import httpx
    import websockets

    headers = {"Cookie": cookie, "Origin": base}
    notice, row = [], []
    async with (
        websockets.connect(f"ws://127.0.0.1:{port}/ws/staff/rooms/", additional_headers=headers) as ws,
        httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}) as http,
    ):
        assert json.loads(await ws.recv())["type"] == "ready"
        rng = random.Random(11)
        for k in range(rounds + 3):
            phone = rng.choice(phones)
            text = f"live probe {k} {secrets.token_hex(3)}"
            form = {
                "MessageSid": "SM" + secrets.token_hex(16),
                "AccountSid": ACCOUNT_SID,
                "From": phone,
                "To": OUR_NUMBER,
                "Body": text,
                "NumMedia": "0",
            }
            path = "/webhooks/bench-sms/"
            signature = validator.compute_signature(base + path, form)
            t0 = time.perf_counter()
            response = await http.post(path, data=form, headers={"X-Twilio-Signature": signature})
            assert response.status_code == 200, response.text
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "room_activity":
                    break
            t1 = time.perf_counter()
            await asyncio.sleep(0.06)  # the page's burst window before it re-reads the list
            listing = await http.get("/admin/inbox/list/", headers={"HX-Request": "true", "HX-Target": "rk-inbox-list"})
            t2 = time.perf_counter()
            top = listing.text.split('<li class="rk-inbox-row', 2)[1] if '<li class="rk-inbox-row' in listing.text else ""
            assert text in top, f"the message is not in the list's top row: {top[:600]}"
            if k >= 3:  # warm-up
                notice.append((t1 - t0) * 1000)
                row.append((t2 - t0) * 1000)
    print(f"\nlive update over {rounds} customer messages (Twilio-signed SMS through a real server):")
    for label, values in (("room_activity on the operator's socket", notice), ("list re-read with it in the top row", row)):
        print(f"  message posted → {label:<40} p50 {percentile(values, 50):6.1f} ms, p95 {percentile(values, 95):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("pg", "sqlite"), default="pg")
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per list case")
    parser.add_argument("--rounds", type=int, default=40, help="customer messages for the live update")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    env = _project(args.db, tmp)
    data = _populate(args.rooms, args.events)
    print(f"database: {'PostgreSQL + Redis' if args.db == 'pg' else 'SQLite (embedded default)'}")
    _measure_list(data["users"][0], args.requests)
    _measure_live(env, data["users"][0], data["phones"], args.rounds)


if __name__ == "__main__":
    main()
