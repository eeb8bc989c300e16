"""A child process that posts messages into a room through ``process_inbound``.

Started by the concurrency tests (``python -m tests.concurrency.inbound_worker``)
with ``DATABASE_URL`` pointing at the test database. It sets Django up, warms
its connection, announces readiness by creating ``--ready`` and waits for the
``--go`` file, so that all workers start their loops together. It writes a JSON
summary (the seqs it was given, statuses, start and end times) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", required=True)
    parser.add_argument("--sender", required=True)
    parser.add_argument("--room", default=None, help="target the room by id; else route by sender")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tag", required=True, help="prefix of this worker's provider message ids")
    parser.add_argument("--ready", required=True)
    parser.add_argument("--go", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")
    import django

    django.setup()
    from django.db import connection

    from rooms.inbound import InboundMessage, process_inbound
    from rooms.selectors import get_channel

    get_channel(args.channel)  # warm the connection and the channel cache
    Path(args.ready).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(args.go):
        if time.monotonic() > deadline:
            print("never got the go signal", file=sys.stderr)
            return 2
        time.sleep(0.002)

    seqs: list[int] = []
    statuses: dict[str, int] = {}
    rooms: set[str] = set()
    started = time.time()
    for i in range(args.count):
        result = process_inbound(
            InboundMessage(
                channel_id=args.channel,
                sender=args.sender,
                room_id=args.room,
                text=f"{args.tag} message {i}",
                provider_message_id=f"{args.tag}-{i}",
            )
        )
        statuses[result.status] = statuses.get(result.status, 0) + 1
        seqs.append(result.seq)
        rooms.add(result.room_id)
    finished = time.time()
    connection.close()
    Path(args.out).write_text(
        json.dumps({"seqs": seqs, "statuses": statuses, "rooms": sorted(rooms), "started": started, "finished": finished})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
