"""Request bodies under Daphne reach Django as the client sent them.

Daphne's HTTP requests are Twisted's, and Twisted parses every POST body whose
type is ``multipart/form-data`` or ``application/x-www-form-urlencoded`` into
``request.args`` before Daphne sees the request, for the benefit of Twisted
resources (Daphne never reads ``args``). A multipart body Twisted cannot parse
is answered there with an empty ``400 Bad Request`` and the connection is
dropped: the client never gets our JSON error, and our code never runs. Every
upload that parses is also parsed twice (once by Twisted, once by Django).
Twisted's ``Request`` takes ``parsePOSTFormSubmission=False`` to leave the
body alone; Daphne offers no setting for it, so its request class is replaced
by one that passes it.
"""

from __future__ import annotations

import sys
from typing import Any


def leave_form_bodies_to_django() -> bool:
    """Under Daphne, stop Twisted parsing form bodies; True if installed (or already)."""
    if "daphne.server" not in sys.modules:
        return False  # not serving under Daphne (tests, commands): nothing to change
    from daphne import http_protocol

    current = http_protocol.WebRequest
    if getattr(current, "leaves_form_bodies", False):
        return True

    class UnparsedBodyRequest(current):  # type: ignore[misc, valid-type]
        leaves_form_bodies = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    # ``HTTPFactory.buildProtocol`` reads the module's name for each connection.
    http_protocol.WebRequest = UnparsedBodyRequest
    return True
