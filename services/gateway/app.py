"""The HTTP/WebSocket gateway: ``create_app`` builds the aiohttp application.

Collaborators come in as arguments (the NATS :class:`Bus`, the heartbeat
tracker, the ``[gateway]`` settings), so tests run the real app on a real
socket with their own. Every route answers JSON; every failure is
``{ok: false, error}`` (errors.py); every body and query goes through
parsing.py. Serve it with ``server.GatewayRunner`` so that requests aiohttp
refuses before routing are JSON too.

Routes:
  GET /health                      NATS, store, expected services, faults; 503 naming a problem
  GET /api/events                  stored events: after, limit, type (prefix), key, last
  GET /api/modder/hooks            recent events on a topic (a subject pattern)
  GET /api/modder/hooks/ws         WebSocket: stored events after a position, then live
  /api/gpu, /api/compute, /api/providers, /api/flags   compute.py
  /api/providers/gpu/*                                 providers_gpu.py
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from schemas.subjects import STORE_READ
from schemas.system import StoreReadRequest
from services.gateway import compute, hooks, providers_gpu
from services.gateway.errors import json_errors
from services.gateway.health import health
from services.gateway.heartbeats import HeartbeatTracker
from services.gateway.parsing import MAX_BODY_BYTES, parse_query
from services.gateway.state import BUS, HEARTBEATS, SETTINGS, SOCKETS
from services.runtime.bus import Bus
from services.runtime.config import GatewaySection


async def events(request: web.Request) -> web.Response:
    req = parse_query(request, StoreReadRequest)
    if req.patterns or req.types:
        hooks.check_patterns([*(req.patterns or []), *(req.types or [])])
    raw = await request.app[BUS].call_raw(STORE_READ, msgspec.json.encode(req))
    return web.Response(body=compute.ok_body(raw), content_type="application/json")


def create_app(
    bus: Bus, heartbeats: HeartbeatTracker, settings: GatewaySection | None = None
) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    app[BUS] = bus
    app[HEARTBEATS] = heartbeats
    app[SETTINGS] = settings or GatewaySection()
    sockets: dict[web.WebSocketResponse, web.Request] = {}
    app[SOCKETS] = sockets
    app.on_shutdown.append(hooks.close_all)
    app.router.add_get("/health", health)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/modder/hooks", hooks.hooks)
    app.router.add_get("/api/modder/hooks/ws", hooks.hooks_ws)
    providers_gpu.add_routes(app)  # /api/providers/gpu/* before /api/providers/{id}
    compute.add_routes(app)
    return app


__all__ = ["create_app"]
