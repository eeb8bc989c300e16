"""Serve everything on one port, with background work running.

Embedded default: Daphne in this process, tasks and the beat schedule on
in-process threads. With REDIS_URL: Daphne here plus a Celery worker and beat
as child processes (scale out by running more of each elsewhere).

Tuned for many open sockets in one process: the open-file limit raised to its
hard limit (a socket is a file descriptor), Daphne's passes over every
connection done in slices (``roomkit_project.daphne_server``) and garbage
collection that never scans the long-lived sockets (``roomkit_project.gc_tuning``).
"""

import asyncio
import resource
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
        parser.add_argument(
            "--server",
            choices=("daphne", "uvicorn"),
            default=settings.ROOMKIT_SERVER,
            help="the ASGI server (default: ROOMKIT_SERVER, else daphne)",
        )

    def handle(self, *args, host: str, port: int, no_workers: bool, server: str, **options):
        children: list[subprocess.Popen] = []
        base = f"http://{host}:{port}"
        if settings.ROOMKIT_TASK_MODE == "celery":
            if not no_workers:
                celery = [sys.executable, "-m", "celery", "-A", "roomkit_project"]
                children.append(subprocess.Popen(celery + ["worker", "-Q", "default,deliveries,ai", "-l", "INFO"]))
                children.append(subprocess.Popen(celery + ["beat", "-l", "INFO"]))
            mode = "Celery workers + beat on Redis"
        else:
            from rooms.infra.task_queue import start_embedded_beat

            start_embedded_beat()
            mode = "in-process worker threads"
        services = self._start_app_services(children, no_workers)
        self.stdout.write(
            f"\nRoomKit Django on {base}\n"
            f"  chat      {base}/\n  inbox     {base}/admin/inbox/\n  admin     {base}/admin/\n"
            f"  API       {base}/api/v1/  (schema: {base}/api/v1/openapi.json)\n"
            f"  webhooks  {base}/webhooks/<channel_id>/\n  health    {base}/healthz\n"
            f"  background work: {mode}\n" + "".join(services)
        )
        raise_open_file_limit()
        try:
            if server == "uvicorn":
                run_uvicorn(host, port)
            else:
                run_daphne(host, port)
        finally:
            for child in children:
                child.terminate()

    def _start_app_services(self, children: list[subprocess.Popen], no_workers: bool) -> list[str]:
        """What other apps run beside the server (``rooms.registries.register_serve_starter``): their banner lines."""
        from rooms.registries import serve_starters

        lines = []
        for label, start in serve_starters().items():
            line, started = start(settings.ROOMKIT_TASK_MODE == "celery", no_workers)
            children.extend(started)
            if line:
                lines.append(f"  {label}: {line}\n")
        return lines


def run_daphne(host: str, port: int) -> None:
    """Daphne, tuned for many idle sockets (``roomkit_project.daphne_server``)."""
    # Imported here: it installs Twisted's asyncio reactor (before anything imports another).
    from roomkit_project.daphne_server import RoomKitDaphneCLI, reactor
    from roomkit_project.gc_tuning import gc_tune_for_serving

    # Runs once the reactor's asyncio loop does (callWhenRunning fires before it runs).
    reactor.callLater(0, lambda: gc_tune_for_serving(asyncio.get_running_loop()))
    RoomKitDaphneCLI().run(["-b", host, "-p", str(port), "roomkit_project.asgi:application"])


def run_uvicorn(host: str, port: int) -> None:
    """Uvicorn: httptools for HTTP/1.1, websockets for sockets, uvloop when installed."""
    import uvicorn

    from roomkit_project.gc_tuning import gc_tune_for_serving

    config = uvicorn.Config(
        "roomkit_project.asgi:application",
        host=host,
        port=port,
        http="httptools",
        ws="websockets",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        gc_tune_for_serving(asyncio.get_running_loop())
        await server.serve()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to the hard one (often 1,024 against 500,000+); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
