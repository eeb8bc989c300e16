"""Serve everything on one port, with background work running.

Embedded default: Daphne in this process, tasks and the beat schedule on
in-process threads. With REDIS_URL: Daphne here plus a Celery worker and beat
as child processes (scale out by running more of each elsewhere).
"""

import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the ASGI server (HTTP + WebSocket) with background work."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-workers", action="store_true", help="do not start Celery children")

    def handle(self, *args, host: str, port: int, no_workers: bool, **options):
        children: list[subprocess.Popen] = []
        base = f"http://{host}:{port}"
        if settings.ROOMKIT_TASK_MODE == "celery":
            if not no_workers:
                celery = [sys.executable, "-m", "celery", "-A", "roomkit_project"]
                children.append(subprocess.Popen(celery + ["worker", "-Q", "default,deliveries,ai", "-l", "INFO"]))
                children.append(subprocess.Popen(celery + ["beat", "-l", "INFO"]))
            mode = "Celery workers + beat on Redis"
        else:
            from rooms.task_queue import start_embedded_beat

            start_embedded_beat()
            mode = "in-process worker threads"
        self.stdout.write(
            f"\nRoomKit Django on {base}\n"
            f"  chat      {base}/\n  admin     {base}/admin/\n"
            f"  API       {base}/api/v1/  (schema: {base}/api/v1/openapi.json)\n"
            f"  webhooks  {base}/webhooks/<channel_id>/\n  health    {base}/healthz\n"
            f"  background work: {mode}\n"
        )
        from daphne.cli import CommandLineInterface

        try:
            CommandLineInterface().run(["-b", host, "-p", str(port), "roomkit_project.asgi:application"])
        finally:
            for child in children:
                child.terminate()
