"""Cross-site WebSocket hijacking protection: only pages this site serves may open its sockets.

Browsers send the page's ``Origin`` with every WebSocket handshake and let any
page open a socket to any site, so the server must check it. A handshake is
accepted when its origin is

- listed in ``ROOMKIT_WS_ALLOWED_ORIGINS`` (``PUBLIC_BASE_URL``'s origin plus
  any in the environment variable of that name; ``*`` allows every origin,
  and handshakes without one);
- or the socket's own host (the page was served by this server under the
  name the socket uses), when that host is one of ``ALLOWED_HOSTS``;
- or a host matching an ``ALLOWED_HOSTS`` entry other than the bare ``*``
  (that one says which Host headers to answer, not which sites to trust).

Anything else, including no ``Origin`` at all, is refused before the
handshake completes (HTTP 403). Settings are read on each handshake, so
``override_settings`` works in tests.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, or None if it is not a usable one."""
    try:
        parts = urlsplit(origin.strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1")
    return None


def origin_allowed(scope: dict[str, Any]) -> bool:
    allowed = list(getattr(settings, "ROOMKIT_WS_ALLOWED_ORIGINS", []))
    if "*" in allowed:
        return True
    raw = _header(scope, b"origin")
    origin = _origin_parts(raw) if raw else None
    if origin is None:
        return False
    _scheme, host, port = origin
    if any(_origin_parts(entry) == origin for entry in allowed):
        return True
    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    # Same origin: the page came from the host this socket is opened on.
    host_header = _header(scope, b"host")
    if host_header:
        domain, host_port = split_domain_port(host_header.lower())
        if domain and validate_host(domain, allowed_hosts):
            if domain.strip("[]") == host and (not host_port or int(host_port) == port):
                return True
    specific = [h for h in allowed_hosts if h != "*"]
    return bool(specific) and validate_host(host, specific)


class WebSocketOriginMiddleware:
    """ASGI middleware: refuse WebSocket handshakes from origins ``origin_allowed`` rejects.

    ``exempt_prefixes``: paths of sockets that servers, not browsers, open (a
    vendor's media stream). They send no ``Origin`` and carry no ambient
    credentials a foreign page could borrow, so the check would only refuse
    them; they authenticate themselves (signatures, tokens) instead.
    """

    def __init__(self, app: Any, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            if not scope.get("path", "").startswith(self.exempt_prefixes):
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
