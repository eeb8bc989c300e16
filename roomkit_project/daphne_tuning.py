"""Per-frame overhead in Daphne's WebSocket stack that costs us and buys nothing.

autobahn (Daphne's WebSocket protocol) builds the arguments of its debug log
lines before calling the logger, even when debug logging is off: for every
frame it sends, ``sendData`` colours three values with ``click.style``
(``hltype``/``hlval``, about 10 µs a frame here, a tenth of the cost of a
delivered frame), and every new connection pretty-prints its whole
configuration (``pformat``). While autobahn's log level is above debug, we
give its protocol module plain versions of those helpers: same log text,
without colour, never computed for nothing that matters. With debug logging
on, nothing changes.
"""

from __future__ import annotations

from typing import Any

_DEBUG_LEVELS = {"debug", "trace"}


def _name(obj: Any) -> str:
    return f"<{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}>"


def skip_autobahn_debug_formatting() -> bool:
    """Under Daphne, install the plain helpers unless autobahn logs at debug level; True if installed."""
    import sys

    if "daphne.server" not in sys.modules:
        return False  # not serving under Daphne (tests, commands): leave autobahn alone
    import txaio
    from autobahn.websocket import protocol

    if txaio.get_global_log_level() in _DEBUG_LEVELS:
        return False
    protocol.hltype = _name
    protocol.hlval = str
    protocol.pformat = repr
    return True
