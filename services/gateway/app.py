"""The HTTP/WebSocket gateway: ``create_app`` builds the aiohttp application.

Collaborators come in as small interfaces (state.py): a :class:`Caller` for
request/reply, a :class:`Follower` for stored-then-live events, the heartbeat
tracker and the ``[gateway]`` settings, so tests run the real app on a real
socket with real or fake collaborators. Every route is a row of
``routes.TABLE``; the OpenAPI document is generated from the same rows.

Middlewares, outermost first: the guard (guard.py: Host 421, Origin 403,
bearer token 401; nothing of a refused request is read), then
``errors.json_errors`` (every failure is ``{ok: false, error}``). Serve the
app with ``server.GatewayRunner`` so that requests aiohttp refuses before
routing are JSON too.
"""

from __future__ import annotations

from aiohttp import web

from schemas.gateway_settings import GatewaySettings
from services.gateway import documents, hooks
from services.gateway.errors import json_errors
from services.gateway.guard import GuardSettings, guard
from services.gateway.heartbeats import HeartbeatTracker
from services.gateway.parsing import MAX_BODY_BYTES
from services.gateway.routes import TABLE
from services.gateway.state import CALLER, FOLLOWER, HEARTBEATS, SETTINGS, SOCKETS, Caller, Follower
from services.gateway.table import register
from services.runtime.config import bearer_token


def guard_settings(settings: GatewaySettings, bind_host: str) -> GuardSettings:
    """What the guard lets through, from ``[gateway]`` and the address bound."""
    return GuardSettings.build(
        bind_host=bind_host,
        hosts=settings.hosts,
        origins=settings.origins,
        token=bearer_token(settings),
        read_token=settings.read_token,
        open_paths=[route.path for route in TABLE if route.open],
    )


def create_app(
    caller: Caller,
    follower: Follower,
    heartbeats: HeartbeatTracker,
    settings: GatewaySettings | None = None,
    *,
    bind_host: str = "127.0.0.1",
) -> web.Application:
    settings = settings or GatewaySettings()
    app = web.Application(
        middlewares=[guard(guard_settings(settings, bind_host)), json_errors],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CALLER] = caller
    app[FOLLOWER] = follower
    app[HEARTBEATS] = heartbeats
    app[SETTINGS] = settings
    app[documents.DOCUMENTS] = documents.for_table(TABLE)
    sockets: dict[web.WebSocketResponse, web.Request] = {}
    app[SOCKETS] = sockets
    app.on_shutdown.append(hooks.close_all)
    register(app, TABLE)
    return app


__all__ = ["create_app", "guard_settings"]
