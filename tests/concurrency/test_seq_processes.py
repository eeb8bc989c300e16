"""Per-room order across OS processes: seqs are gapless and unique.

Eight processes post 200 messages each into one room at the same moment, half
routed by the sender's binding and half targeting the room by id. The room
must end with exactly 1,600 events numbered 1..1,600, each process must have
been handed increasing seqs, and their time windows must overlap (else the
test proved nothing about concurrency).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from django.test import TransactionTestCase

from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from tests.concurrency.processes import child_env, start_child
from tests.support import make_channel

WORKERS = 8
PER_WORKER = 200


class SeqAcrossProcessesTest(TransactionTestCase):
    def test_eight_processes_get_gapless_unique_seqs(self):
        channel = make_channel("sms-conc", channel_type="sms", secrets={"signing_secret": "s"})
        sender = "+15550100"
        room = Room.objects.create()
        participant = Participant.objects.create(room=room, channel=channel, address=sender, display_name="Load")
        ChannelBinding.objects.create(room=room, channel=channel, address=sender, participant=participant)

        work = Path(tempfile.mkdtemp(prefix="rk-seq-"))
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        go = work / "go"
        env = child_env()
        children = []
        for n in range(WORKERS):
            args = [
                sys.executable,
                "-m",
                "tests.concurrency.inbound_worker",
                "--channel",
                channel.id,
                "--sender",
                sender,
                "--count",
                str(PER_WORKER),
                "--tag",
                f"w{n}",
                "--ready",
                str(work / f"ready{n}"),
                "--go",
                str(go),
                "--out",
                str(work / f"out{n}.json"),
            ]
            if n % 2:
                args += ["--room", room.id]
            children.append(start_child(self, args, env, name=f"seq-worker-{n}"))

        deadline = time.monotonic() + 60
        while not all((work / f"ready{n}").exists() for n in range(WORKERS)):
            for c in children:
                if c.proc.poll() is not None:
                    self.fail(f"{c.name} exited early with {c.proc.returncode}:\n{c.output()}")
            self.assertLess(time.monotonic(), deadline, "workers did not get ready in time")
            time.sleep(0.02)
        go.touch()

        for c in children:
            try:
                code = c.proc.wait(90)
            except Exception:
                self.fail(f"{c.name} did not finish:\n{c.output()}")
            self.assertEqual(code, 0, f"{c.name} failed:\n{c.output()}")
        outs = [json.loads((work / f"out{n}.json").read_text()) for n in range(WORKERS)]
        for n, out in enumerate(outs):
            self.assertEqual(out["statuses"], {"stored": PER_WORKER}, f"worker {n}")
            self.assertEqual(out["rooms"], [room.id], f"worker {n} was routed elsewhere")
            self.assertEqual(out["seqs"], sorted(out["seqs"]), f"worker {n} saw its seqs go backwards")
        # They really ran at the same time: every worker started before any finished.
        self.assertLess(max(o["started"] for o in outs), min(o["finished"] for o in outs))

        handed_out = sorted(s for o in outs for s in o["seqs"])
        total = WORKERS * PER_WORKER
        self.assertEqual(handed_out, list(range(1, total + 1)))
        stored = list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
        self.assertEqual(stored, list(range(1, total + 1)))
        self.assertEqual(RoomEvent.objects.count(), total)
        self.assertEqual(Room.objects.get(pk=room.pk).last_seq, total)
        # Every message is there once, from the one participant, in the one room.
        self.assertEqual(RoomEvent.objects.values("provider_message_id").distinct().count(), total)
        self.assertEqual(set(RoomEvent.objects.values_list("source_participant_id", flat=True)), {participant.id})
        self.assertEqual(Room.objects.count(), 1)
        # Within one worker, the stored order is the order it sent in.
        for n in range(WORKERS):
            texts = list(
                RoomEvent.objects.filter(room=room, provider_message_id__startswith=f"w{n}-")
                .order_by("seq")
                .values_list("provider_message_id", flat=True)
            )
            self.assertEqual(texts, [f"w{n}-{i}" for i in range(PER_WORKER)])
