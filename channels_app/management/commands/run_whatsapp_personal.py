"""Keep the WhatsApp Personal channels' clients connected until stopped (SIGTERM or Ctrl+C).

Run it once per deployment (one client per account can be connected): it
serves every enabled ``whatsapp_personal`` channel of provider ``neonize``,
or only those named. Deliveries reach it through Redis when Celery workers
send them (``providers.neonize.outbox``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from django.core.management.base import BaseCommand, CommandError

from rooms.enums import ChannelType
from rooms.models import Channel

if TYPE_CHECKING:
    # Imported when a supervisor starts: neonize loads its Go library on import.
    from channels_app.providers.neonize.supervisor import Supervisor


class Command(BaseCommand):
    help = "Run the neonize clients of WhatsApp Personal channels, restarting them with backoff."

    def add_arguments(self, parser):
        parser.add_argument("channel_ids", nargs="*", help="channels to run (default: every enabled neonize channel)")
        parser.add_argument("--max-backoff", type=float, default=300.0, help="longest wait between restarts, seconds")

    def handle(self, *args, channel_ids: list[str], max_backoff: float, **options):
        found = neonize_channels(channel_ids)
        missing = sorted(set(channel_ids) - set(found))
        if missing:
            raise CommandError(f"no enabled neonize whatsapp_personal channel: {', '.join(missing)}")
        if not found:
            raise CommandError("no enabled neonize whatsapp_personal channel to run")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        supervisor = start_supervisor(found, max_backoff=max_backoff)
        self.stdout.write(f"WhatsApp Personal: running {', '.join(sorted(found))}; the admin shows their state and QR codes")
        stop.wait()
        self.stdout.write("stopping…")
        supervisor.stop()


def neonize_channels(channel_ids: list[str] | None = None) -> dict[str, Channel]:
    """The enabled neonize ``whatsapp_personal`` channels (of ``channel_ids`` if given), by id."""
    channels = Channel.objects.filter(channel_type=ChannelType.WHATSAPP_PERSONAL, provider="neonize", enabled=True)
    if channel_ids:
        channels = channels.filter(pk__in=channel_ids)
    return {c.id: c for c in channels}


def start_supervisor(channels: dict[str, Channel], *, max_backoff: float = 300.0) -> Supervisor:
    """Start a supervisor for ``channels`` on threads of this process (``manage.py serve`` does so without Redis)."""
    from channels_app.providers.neonize import supervisor as neonize_supervisor

    supervisor = neonize_supervisor.Supervisor(list(channels), policy=neonize_supervisor.RestartPolicy(maximum=max_backoff))
    # Each channel's proxy (its config) applies to its own runner.
    for channel_id, runner in supervisor.runners.items():
        runner.proxy = str(channels[channel_id].config.get("proxy") or "")
    supervisor.start()
    return supervisor


def serve_whatsapp_personal(celery: bool, no_workers: bool) -> tuple[str, list[subprocess.Popen]]:
    """``manage.py serve``'s part: a child process with Redis (workers' sends reach it there), else threads of serve's own."""
    channels = neonize_channels()
    if not channels:
        return "", []
    if celery:
        if no_workers:
            return "", []
        child = subprocess.Popen([sys.executable, "manage.py", "run_whatsapp_personal"])
        return f"{len(channels)} channel(s), supervised in a child process", [child]
    start_supervisor(channels)
    return f"{len(channels)} channel(s), supervised in this process", []
