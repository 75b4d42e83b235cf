"""The gateway app's typed state (``web.AppKey``), set by ``app.create_app``.

Route modules read their collaborators from here rather than from ``app.py``,
which imports them to register their routes.
"""

from __future__ import annotations

from aiohttp import web

from services.gateway.heartbeats import HeartbeatTracker
from services.runtime.bus import Bus
from services.runtime.config import GatewaySection

BUS = web.AppKey("bus", Bus)
HEARTBEATS = web.AppKey("heartbeats", HeartbeatTracker)
SETTINGS = web.AppKey("settings", GatewaySection)
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, web.Request])
"""Open modder WebSockets and the requests that opened them (for their transports)."""
