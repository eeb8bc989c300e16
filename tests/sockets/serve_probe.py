"""``manage.py serve`` for ``test_serve_tuning``, with a probe that only observes.

Run as ``python -m tests.sockets.serve_probe REPORT_FILE PORT`` (from the
project root, with the test database's ``DATABASE_URL``). On ``SIGUSR1`` it
writes to REPORT_FILE how many Daphne WebSocket protocols and HTTP channels
are alive in this process, how many of the WebSocket protocols the garbage
collector still scans (not frozen), its thresholds, the open-file limit and
whether autobahn's debug-log helpers were replaced.
The periodic collect-and-freeze runs every half second whatever happened.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import sys
import weakref


def main(report_file: str, port: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")
    import django

    django.setup()
    import daphne.server  # noqa: F401  (installs Twisted's asyncio reactor first)
    from daphne.ws_protocol import WebSocketProtocol
    from django.core.management import call_command
    from twisted.web.http import HTTPChannel

    from roomkit_project import gc_tuning

    gc_tuning.FREEZE_INTERVAL_SECONDS = 0.5
    alive: dict[type, weakref.WeakSet] = {WebSocketProtocol: weakref.WeakSet(), HTTPChannel: weakref.WeakSet()}
    for cls, instances in alive.items():
        original = cls.__init__

        def init(self, *args, __original=original, __instances=instances, **kwargs):
            __original(self, *args, **kwargs)
            __instances.add(self)

        cls.__init__ = init

    def report(signum, frame) -> None:
        import autobahn.util
        from autobahn.twisted import websocket as twisted_adapter
        from autobahn.websocket import protocol

        # issubclass(type(o)), not isinstance: isinstance asks a lazy object
        # (django-csp's nonce) for its __class__, which evaluates it.
        unfrozen = sum(1 for o in gc.get_objects() if issubclass(type(o), WebSocketProtocol))
        data = {
            "ws_protocols": len(alive[WebSocketProtocol]),
            "http_channels": len(alive[HTTPChannel]),
            "ws_protocols_scanned_by_gc": unfrozen,
            "gc_threshold": gc.get_threshold(),
            "open_file_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
            # daphne_tuning's plain helpers in place of autobahn's colouring ones
            "autobahn_plain_log_helpers": twisted_adapter.hltype is not autobahn.util.hltype
            and protocol.hltype is not autobahn.util.hltype,
        }
        with open(report_file + ".tmp", "w") as fh:
            json.dump(data, fh)
        os.replace(report_file + ".tmp", report_file)

    signal.signal(signal.SIGUSR1, report)
    call_command("serve", host="127.0.0.1", port=int(port), no_workers=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
