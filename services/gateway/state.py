"""The gateway's collaborators as small interfaces, and the app's typed state.

``create_app`` takes a :class:`Caller` (anything that can send a request to a
subject and return the reply's bytes: the real :class:`~services.runtime.bus.Bus`
or a test's fake), a :class:`Follower` (stored-then-live events, normally
:func:`services.runtime.follow.follow` bound to the bus) and the heartbeat
tracker. Handlers read them from the ``web.AppKey`` s below, so no route
module imports ``app.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from schemas.gateway_settings import GatewaySettings
from services.gateway.heartbeats import HeartbeatTracker


class Caller(Protocol):
    """Request/reply to a ``nats.micro`` endpoint. ``call_raw`` raises
    :class:`~services.runtime.errors.ServiceCallError` with the endpoint's code
    (503 when nobody answers, 504 on timeout)."""

    @property
    def connected(self) -> bool: ...

    async def call_raw(self, subject: str, payload: bytes, timeout: float = 5.0) -> bytes: ...


class Follower(Protocol):
    """Yields ``{"seq": N, "event": {...}}`` messages: stored after ``after``, then
    live (``FollowerBehind`` past ``max_buffer_bytes``, ``FollowError`` when the
    store cannot be read)."""

    def __call__(
        self, patterns: list[str], after: int | None = None, *, max_buffer_bytes: int = ...
    ) -> AsyncIterator[bytes]: ...


CALLER = web.AppKey("caller", Caller)
FOLLOWER = web.AppKey("follower", Follower)
HEARTBEATS = web.AppKey("heartbeats", HeartbeatTracker)
SETTINGS = web.AppKey("settings", GatewaySettings)
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, web.Request])
"""Open modder WebSockets and the requests that opened them (for their transports)."""
