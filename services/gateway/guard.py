"""Who may talk to the gateway: the Host, Origin and bearer-token checks.

A web page the user happens to visit can make the browser send requests to
127.0.0.1: "simple" requests (a form post, a ``text/plain`` body) go out
without a CORS preflight, and a WebSocket handshake is never preflighted.
DNS rebinding lets such a page reach 127.0.0.1 under its own host name. The
gateway can spend money (live provider calls, cloud pods) and writes the
audit log, so every request passes three checks before any handler runs:

- ``Host`` must be a name the gateway serves: the loopback names, the address
  it is bound to, and ``[gateway] hosts``; anything else is 421 (DNS rebinding).
- ``Origin``, when present, must be the gateway's own origin (the scheme and
  the very ``Host`` of the request) or one of ``[gateway] origins``; anything
  else is 403. Browsers send ``Origin`` on every cross-site POST, PUT, DELETE
  and WebSocket handshake; ``curl`` sends none and keeps working.
- With a token set (``[gateway] token`` or ``GPUROUTE_TOKEN``), every route but
  the table's ``open`` ones (``/health``, the dashboard's static files) needs
  ``Authorization: Bearer <token>`` (a WebSocket handshake may pass it as
  ``?access_token=``, since browsers cannot set headers there);
  with ``read_token = false`` reads (GET, HEAD) go without it and only the
  routes that change state or spend money need it. Tokens are compared in
  constant time and never logged or echoed.

Every refusal is the gateway's usual JSON ``{ok: false, error}``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.gateway.errors import Handler, error_response

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
OPEN_PATHS = frozenset({"/health"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_PARAM = "access_token"
"""The query parameter a WebSocket handshake may carry the token in."""


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header, lower case, without port or brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


@dataclass(frozen=True)
class GuardSettings:
    """What the guard lets through; built from ``[gateway]`` and the bind address."""

    hosts: frozenset[str] = LOOPBACK_HOSTS
    origins: frozenset[str] = frozenset()
    token: str | None = field(default=None, repr=False)
    read_token: bool = True
    """With a token: True means reads need it too; False, only state-changing routes."""
    open_paths: frozenset[str] = OPEN_PATHS
    """Paths answered without the token: the route table's ``open`` rows."""

    @classmethod
    def build(
        cls,
        *,
        bind_host: str,
        hosts: Iterable[str] = (),
        origins: Iterable[str] = (),
        token: str | None = None,
        read_token: bool = True,
        open_paths: Iterable[str] = OPEN_PATHS,
    ) -> GuardSettings:
        names = set(LOOPBACK_HOSTS) | {host_name(h) for h in hosts if h}
        if bind_host not in WILDCARD_BINDS:
            names.add(host_name(bind_host))
        return cls(
            hosts=frozenset(names),
            origins=frozenset(o.rstrip("/").lower() for o in origins if o),
            token=token or None,
            read_token=read_token,
            open_paths=frozenset(open_paths),
        )


def _origin_allowed(origin: str, request: web.Request, settings: GuardSettings) -> bool:
    origin = origin.rstrip("/").lower()
    if origin in settings.origins:
        return True
    parts = urlsplit(origin)
    own = request.headers.get("Host", "").strip().lower()
    return parts.scheme in ("http", "https") and bool(own) and parts.netloc == own


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return request.query.get(TOKEN_PARAM)
    return None


def check(request: web.Request, settings: GuardSettings) -> web.Response | None:
    """The refusal for ``request``, or None when it may go on."""
    host = request.headers.get("Host")
    if host is not None and host_name(host) not in settings.hosts:
        return error_response(
            421,
            f"host {host_name(host)!r} is not served here (allowed: "
            f"{', '.join(sorted(settings.hosts))}; add names to [gateway] hosts)",
        )
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(origin, request, settings):
        return error_response(
            403,
            f"origin {origin[:200]!r} may not use this gateway "
            "(only its own origin and [gateway] origins may)",
        )
    token = settings.token
    if token is None or request.path in settings.open_paths:
        return None
    if not settings.read_token and request.method in READ_METHODS:
        return None
    presented = _presented_token(request)
    if presented is None:
        return error_response(401, "this gateway needs Authorization: Bearer <token>")
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return error_response(401, "the bearer token is not valid")
    return None


def guard(settings: GuardSettings) -> Middleware:
    """The middleware running :func:`check` before every handler."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = check(request, settings)
        if refusal is not None:
            if refusal.status == 401:
                refusal.headers["WWW-Authenticate"] = 'Bearer realm="gpuroute"'
            return refusal
        return await handler(request)

    return middleware
