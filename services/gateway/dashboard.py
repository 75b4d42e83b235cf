"""The live dashboard: ``/`` and ``/dashboard`` (the page) and its files under
``/dashboard/``, served from package data (``services/gateway/dashboard/``).

The page is HTML, CSS and JavaScript written here: no build step, no
third-party code, no CDN. It is a client of the public API only (the REST
routes of the table and the modder-hooks WebSocket), so it holds no data of
its own and is served without the token (``open``): the page asks for the
token once when the gateway answers 401 and sends it on every call. The Host
check still applies to it, like to every route.

Every answer carries ``Content-Security-Policy`` allowing only this origin
(no inline script or style, no other host, no framing), ``nosniff``, no
referrer, and an ``ETag`` with ``Cache-Control: no-cache``: a browser keeps
the files but asks each time, so a new version of gpuroute is seen at once
and an unchanged file costs a 304. The files are read and hashed once, on
first use.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from services.gateway.table import Inputs, LocalHandler, Route

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""``connect-src 'self'`` covers the same-origin WebSocket (CSP level 3)."""

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}
FILES = (
    "app.js",
    "api.js",
    "dom.js",
    "chart.js",
    "panels.js",
    "job.js",
    "settings.js",
    "style.css",
)
"""Every file of the page besides ``index.html``; each is a route of its own."""


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def asset(name: str) -> Asset:
    """A file of the page, read and hashed once (``FileNotFoundError`` for a name
    that is not package data: the package was installed without it)."""
    body = resources.files(__package__).joinpath("dashboard", name).read_bytes()
    suffix = name[name.rfind(".") :]
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Asset(body=body, content_type=CONTENT_TYPES[suffix], etag=f'"{digest}"')


def answer(request: web.Request, name: str) -> web.Response:
    """``name`` with its headers, or 304 when the browser holds this version."""
    file = asset(name)
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
        "ETag": file.etag,
    }
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=file.body, content_type=file.content_type, charset="utf-8", headers=headers
    )


async def page(request: web.Request, inputs: Inputs) -> web.Response:
    return answer(request, "index.html")


def _file_handler(name: str) -> LocalHandler:
    async def serve(request: web.Request, inputs: Inputs) -> web.Response:
        return answer(request, name)

    return serve


def routes() -> tuple[Route, ...]:
    """The rows of the route table: the page at ``/`` and ``/dashboard``, and each
    of its files (so the OpenAPI document lists exactly what is served)."""
    rows = [
        Route(method="GET", path=path, tag="dashboard", handler=page, open=True,
              content_type="text/html",
              summary="the live dashboard (text/html; uses only this API)")
        for path in ("/", "/dashboard")
    ]  # fmt: skip
    for name in FILES:
        media = CONTENT_TYPES[name[name.rfind(".") :]]
        rows.append(
            Route(method="GET", path=f"/dashboard/{name}", tag="dashboard",
                  handler=_file_handler(name), open=True, content_type=media,
                  summary=f"a file of the dashboard ({media})")
        )  # fmt: skip
    return tuple(rows)


ROUTES = routes()
