"""The HTTP/WebSocket gateway: ``create_app`` builds the aiohttp application.

Collaborators come in as arguments (the NATS :class:`Bus` and the heartbeat
tracker), so tests run the real app on a real socket with their own. Every
route answers JSON; every failure is ``{ok: false, error}`` (see errors.py).

Routes:
  GET /health                      NATS, store position, heartbeats; 503 if a part is down
  GET /api/events                  stored events: after, limit, type (prefix), key, last
  GET /api/modder/hooks            recent events on a topic (a subject pattern)
  GET /api/modder/hooks/ws         WebSocket: stored events after a position, then live
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from aiohttp import WSMsgType, web

from schemas import event_types
from schemas.subjects import STORE_READ, STORE_STATS
from schemas.system import StoredEvent, StoreReadRequest, StoreStats, decode_page, type_of
from services.gateway import compute, providers_gpu
from services.gateway.errors import BadRequest, json_errors
from services.gateway.heartbeats import HeartbeatTracker
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.follow import (
    FollowError,
    follow,
    literal_prefix,
    subject_matches,
    valid_pattern,
)

BUS = web.AppKey("bus", Bus)
HEARTBEATS = web.AppKey("heartbeats", HeartbeatTracker)
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])


class HooksQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    topic: str = ">"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class HooksSubscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subjects: list[str] = msgspec.field(default_factory=lambda: [">"])
    after: int | None = None


def parse_query(request: web.Request, type_: type[Any]) -> Any:
    """Query string -> typed Struct; "5" converts to 5, a bad value is a 400
    naming the parameter."""
    try:
        return msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as e:
        raise BadRequest(f"invalid query: {e}") from e


def topic_pattern(topic: str) -> str:
    """``job`` means every ``job.*`` subject; an exact type or a pattern stays as given."""
    if "*" in topic or ">" in topic or topic in event_types():
        return topic
    return topic.rstrip(".") + ".>"


async def health(request: web.Request) -> web.Response:
    bus, beats = request.app[BUS], request.app[HEARTBEATS]
    body: dict[str, Any] = {"nats": {"connected": bus.connected}}
    healthy = bus.connected
    try:
        stats = await bus.call(STORE_STATS, {}, StoreStats, timeout=2.0)
        body["store"] = {"ok": True, **msgspec.structs.asdict(stats)}
    except ServiceCallError as e:
        body["store"] = {"ok": False, "error": str(e)}
        healthy = False
    body["services"] = beats.snapshot()
    body["ok"] = healthy
    return web.json_response(body, status=200 if healthy else 503)


async def events(request: web.Request) -> web.Response:
    req = parse_query(request, StoreReadRequest)
    raw = await request.app[BUS].call_raw(STORE_READ, msgspec.json.encode(req))
    return web.Response(body=b'{"ok":true,' + raw[1:], content_type="application/json")


async def hooks(request: web.Request) -> web.Response:
    q = parse_query(request, HooksQuery)
    pattern = topic_pattern(q.topic)
    if not valid_pattern(pattern):
        raise BadRequest(f"invalid query: topic {q.topic!r} is not a subject pattern")
    req = StoreReadRequest(limit=q.limit, type=literal_prefix([pattern]), last=True)
    raw = await request.app[BUS].call_raw(STORE_READ, msgspec.json.encode(req))
    page = decode_page(raw)
    items = [i for i in page.events if subject_matches(pattern, type_of(i.event))]
    body = msgspec.json.encode(_Hooks(topic=pattern, events=items))
    return web.Response(body=body, content_type="application/json")


class _Hooks(msgspec.Struct, kw_only=True):
    ok: bool = True
    topic: str
    events: list[StoredEvent]


async def hooks_ws(request: web.Request) -> web.WebSocketResponse:
    """Query ``subjects`` (comma-separated patterns) and ``after``, or a first
    client message ``{"subjects": [...], "after": N}``. Then one text frame per
    event: ``{"seq": N, "event": {...}}``."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        sub = await _subscription(request, ws)
        if sub is None:
            return ws
        task = asyncio.create_task(_pump(request.app[BUS], ws, sub))
        try:
            async for msg in ws:  # the client may only close; other frames are ignored
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


async def _subscription(request: web.Request, ws: web.WebSocketResponse) -> HooksSubscribe | None:
    try:
        if "subjects" in request.query or "after" in request.query:
            q = dict(request.query)
            subjects = [s for s in q.pop("subjects", ">").split(",") if s]
            sub = msgspec.convert({**q, "subjects": subjects}, HooksSubscribe, strict=False)
        else:
            first = await ws.receive(timeout=30)
            if first.type != WSMsgType.TEXT:
                raise BadRequest("expected a JSON subscription message")
            sub = msgspec.json.decode(first.data, type=HooksSubscribe)
        bad = [s for s in sub.subjects if not valid_pattern(s)]
        if bad or not sub.subjects:
            raise BadRequest(f"invalid subject pattern: {bad[0] if bad else ''!r}")
        if sub.after is not None and sub.after < 0:
            raise BadRequest("after must be >= 0")
        return sub
    except (msgspec.ValidationError, msgspec.DecodeError, BadRequest, TimeoutError) as e:
        await ws.send_json({"ok": False, "error": f"invalid subscription: {e}"})
        await ws.close()
        return None


async def _pump(bus: Bus, ws: web.WebSocketResponse, sub: HooksSubscribe) -> None:
    try:
        async for item in follow(bus, sub.subjects, sub.after):
            await ws.send_str(item.decode())
    except (FollowError, GpurouteError) as e:
        with contextlib.suppress(ConnectionError):
            await ws.send_json({"ok": False, "error": str(e)})
    except ConnectionError:
        pass
    await ws.close()


async def _close_sockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


def create_app(bus: Bus, heartbeats: HeartbeatTracker) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[BUS] = bus
    app[HEARTBEATS] = heartbeats
    sockets: set[web.WebSocketResponse] = set()
    app[SOCKETS] = sockets
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/health", health)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/modder/hooks", hooks)
    app.router.add_get("/api/modder/hooks/ws", hooks_ws)
    compute.add_routes(app)
    providers_gpu.add_routes(app)
    return app


__all__ = ["create_app"]
