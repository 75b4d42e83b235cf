"""The route table's machinery: what a :class:`Route` declares, the one handler
that serves every relayed route, and registration.

A relayed route parses its path, query and body (parsing.py), builds the
request message (``Route.request``; by default the body, else the path, else
the query), calls ``Route.subject`` through the app's :class:`Caller` within
``Route.timeout`` and answers the reply's bytes as they came, inside the
``{"ok":true, ...}`` envelope (:func:`ok_body`) unless the reply carries its
own ``ok`` (``envelope=False``). Nothing is decoded and encoded again on the
way back. Every failure goes through ``errors.json_errors``.

A route with ``handler`` is answered by the gateway itself (``/health``, the
documents, the modder hooks); it gets the parsed :class:`Inputs` too, unless
``own_query`` says it reads the query itself (the WebSocket, whose errors are
frames after the handshake).

:func:`register` adds routes in table order, and a path parameter never
matches a literal segment another route has at the same place
(``/api/providers/{id}`` is not ``/api/providers/stats``), whatever the order.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from schemas.strict import strict
from services.gateway.errors import BadRequest, GatewayError
from services.gateway.parsing import convert_params, parse_query, read_body
from services.gateway.state import CALLER

S = TypeVar("S", bound=msgspec.Struct)

QUERY_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
"""Commands wait for their event to come back from the store before replying."""
PROVIDER_CALL_TIMEOUT_S = 150.0
"""Longer than an adapter's own timeouts and retries, so the provider's answer (or its
error) comes back rather than a gateway timeout."""


@dataclass(frozen=True)
class Inputs:
    """What a request carried, parsed: ``query`` and ``body`` as the route's
    types (None when the route declares none), ``match`` the raw path segments."""

    query: Any
    body: Any
    match: Mapping[str, str]

    def path(self, type_: type[S], **extra: Any) -> S:
        """The path segments (plus ``extra`` fields) as ``type_``, bounded like a body."""
        return convert_params({**self.match, **extra}, type_, what="path", known_only=False)


LocalHandler = Callable[[web.Request, Inputs], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class Route:
    """One row of the route table (see routes.py); the OpenAPI document is built
    from these fields and the Structs they name."""

    method: str
    path: str
    """An OpenAPI path template: ``/api/providers/{id}``."""
    summary: str
    tag: str
    subject: str | None = None
    """The request/reply subject a relayed route calls."""
    query: type[msgspec.Struct] | None = None
    """None: the route takes no query parameter (any is a 400). Parsed as its
    strict form (``schemas.strict``), like ``body``."""
    body: Any = None
    """A Struct (or ``Any``); None: the body is not read."""
    path_type: type[msgspec.Struct] | None = None
    """The Struct whose fields type the path parameters."""
    reply: Any = None
    """The reply's type (the document's success schema)."""
    request: Callable[[Inputs], msgspec.Struct] | None = None
    """Builds the request message; None: the body, else the path, else the query."""
    body_from_path: bool = False
    """A body field absent from the body is taken from the path segment of that name."""
    status: int = 200
    content_type: str = "application/json"
    """The media type of a success (``text/html`` for the docs page)."""
    timeout: float = QUERY_TIMEOUT_S
    errors: tuple[int, ...] = ()
    """Statuses this route's service may answer besides the ones every route can
    (openapi.py adds those)."""
    envelope: bool = True
    """False: the reply carries its own ``ok`` (the adapters' results) and is sent as is."""
    handler: LocalHandler | None = None
    own_query: bool = False
    websocket: bool = False
    open: bool = False
    """Answered without a token (``/health``)."""

    def __post_init__(self) -> None:
        # what a person types is decoded as its strict form: a typo is a 400 naming it
        for name in ("query", "body"):
            t = getattr(self, name)
            if isinstance(t, type) and issubclass(t, msgspec.Struct):
                object.__setattr__(self, name, strict(t))

    def message(self, inputs: Inputs) -> msgspec.Struct:
        if self.request is not None:
            return self.request(inputs)
        if self.body is not None:
            return inputs.body  # type: ignore[no-any-return]
        if self.path_type is not None:
            return inputs.path(self.path_type)
        if self.query is not None:
            return inputs.query  # type: ignore[no-any-return]
        raise GatewayError(f"route {self.method} {self.path} builds no request")


def ok_body(raw: bytes, extra: bytes = b"") -> bytes:
    """``{"ok":true, <extra,> ...}`` from a JSON object reply, without decoding it."""
    inner = raw.strip()
    if not inner.startswith(b"{"):
        raise GatewayError("the service answered something that is not a JSON object")
    rest = inner[1:].lstrip()
    head = b'{"ok":true' + (b"," + extra if extra else b"")
    return head + (b"}" if rest == b"}" else b"," + rest)


async def parse_inputs(route: Route, request: web.Request) -> Inputs:
    """The one place a request's path, query and body are read (parsing.py)."""
    if route.query is None:
        if request.query and not route.own_query:
            names = ", ".join(f"`{k[:64]}`" for k in sorted(set(request.query))[:10])
            raise BadRequest(f"invalid query: unknown parameters {names} (known: none)")
        query = None
    else:
        query = parse_query(request, route.query)
    body = None
    if route.body is not None:
        if route.body_from_path:
            doc = await read_body(request, Any)
            if isinstance(doc, dict):
                for name, value in request.match_info.items():
                    doc.setdefault(name, value)
            body = msgspec.convert(doc, route.body)
        else:
            body = await read_body(request, route.body)
    return Inputs(query=query, body=body, match=request.match_info)


async def relay(
    request: web.Request, route: Route, message: msgspec.Struct, *, extra: bytes = b""
) -> web.Response:
    """Call ``route.subject`` with ``message`` and answer the reply's bytes."""
    subject = route.subject
    if subject is None:
        raise GatewayError(f"route {route.method} {route.path} names no subject")
    raw = await request.app[CALLER].call_raw(
        subject, msgspec.json.encode(message), timeout=route.timeout
    )
    body = ok_body(raw, extra) if route.envelope else raw
    return web.Response(body=body, status=route.status, content_type="application/json")


def handler_for(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    local = route.handler
    if local is not None:
        if route.own_query:
            empty = Inputs(query=None, body=None, match={})

            async def own(request: web.Request) -> web.StreamResponse:
                return await local(request, empty)

            return own

        async def answer(request: web.Request) -> web.StreamResponse:
            return await local(request, await parse_inputs(route, request))

        return answer

    async def relayed(request: web.Request) -> web.StreamResponse:
        inputs = await parse_inputs(route, request)
        return await relay(request, route, route.message(inputs))

    return relayed


_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def router_path(route: Route, table: Sequence[Route]) -> str:
    """``route.path`` for aiohttp: each ``{name}`` refuses the literal segments
    that other routes have at the same place under the same prefix."""
    parts = route.path.split("/")
    out = []
    for i, part in enumerate(parts):
        param = _PARAM.match(part)
        if param is None:
            out.append(part)
            continue
        literals = sorted(
            {
                other[i]
                for other in (r.path.split("/") for r in table)
                if len(other) > i and other[:i] == parts[:i] and not other[i].startswith("{")
            }
        )
        if literals:
            exclude = "|".join(re.escape(s) for s in literals)
            out.append(f"{{{param.group(1)}:(?!(?:{exclude})$)[^{{}}/]+}}")
        else:
            out.append(part)
    return "/".join(out)


def register(app: web.Application, table: Sequence[Route]) -> None:
    """Add every route of ``table`` (no implicit HEAD: the document lists them all)."""
    for route in table:
        app.router.add_route(route.method, router_path(route, table), handler_for(route))
