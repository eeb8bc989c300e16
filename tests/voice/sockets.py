"""What the call tests' socket drivers share: waiting, on the event loop, for what the server has sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


class SocketWatch:
    """A driver of one socket on the project's ASGI app calls ``changed()`` whenever the app sends it something."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()

    def describe(self) -> str:
        """What the driver has received lately, for a failure's message."""
        return ""

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        """``check()``'s first true answer, re-checked each time the app sends something; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{what} within {timeout}s; {self.describe()}")
            self._changed.clear()
            try:
                # Also woken every 50 ms: some checks read state the app changes without sending.
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass
