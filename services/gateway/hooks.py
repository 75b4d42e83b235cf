"""Modder hooks: recent events on a topic, and a WebSocket of stored then live events.

  GET /api/modder/hooks?topic=*.failed&limit=3   the newest ``limit`` events whose
                                                 type matches the topic (a NATS pattern)
  GET /api/modder/hooks/ws                       WebSocket (see :func:`hooks_ws`)

A subscription names at most ``MAX_PATTERNS`` subject patterns of at most
``MAX_SUBJECT_BYTES`` each, in printable ASCII (a subject goes into NATS's
protocol line as is), and ``after`` is a position SQLite can hold; anything
else is refused with the limit named.

Each client is bounded: a send that waits longer than
``[gateway] ws_send_timeout_s`` on the client, or a follower whose buffer
overflows (``FollowerBehind`` from :func:`services.runtime.follow.follow`),
closes the socket with code ``CLOSE_TOO_SLOW`` and the reason
``too slow: reconnect with after=N`` (N is the last position sent), so the
client resumes without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from typing import Annotated

import msgspec
from aiohttp import WSMsgType, web

from schemas import event_types, limits
from schemas.subjects import STORE_READ
from schemas.system import StoredEvent, StoreReadRequest
from services.gateway.errors import BadRequest
from services.gateway.guard import TOKEN_PARAM
from services.gateway.parsing import convert_params
from services.gateway.state import CALLER, FOLLOWER, SETTINGS, SOCKETS
from services.gateway.table import Inputs, ok_body
from services.runtime.errors import GpurouteError
from services.runtime.follow import FollowerBehind, valid_pattern

CLOSE_BAD_SUBSCRIPTION = 4400
CLOSE_TOO_SLOW = 4008
MAX_FRAME_BYTES = 64 * 1024
"""A client frame (only the subscription message is read)."""
SUBSCRIBE_TIMEOUT_S = 30.0
SEND_BUFFER_BYTES = 64 * 1024
"""The kernel's send buffer of one WebSocket: with aiohttp's own 64 KiB, what a
client that stops reading can hold before its sends block (and time out)."""
WS_BUFFER_BYTES = 256 * 1024
"""Live events waiting for one client before it is closed as too slow."""
CLOSE_GRACE_S = 30.0
"""How long a closed client that does not read has to collect its close frame
before its connection is dropped."""

Patterns = Annotated[
    list[limits.Pattern], msgspec.Meta(min_length=1, max_length=limits.MAX_PATTERNS)
]


class HooksQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    topic: limits.Pattern = ">"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class HooksSubscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subjects: Patterns = msgspec.field(default_factory=lambda: [">"])
    after: limits.Position | None = None


class HooksWsQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The WebSocket's query; without it the first client frame is a
    :class:`HooksSubscribe`."""

    subjects: Annotated[str, msgspec.Meta(max_length=limits.MAX_PATTERNS * 257)] = ">"
    """Comma-separated subject patterns."""
    after: limits.Position | None = None


class HooksReply(msgspec.Struct, frozen=True, kw_only=True):
    """``topic``: the pattern matched (``job`` becomes ``job.>``); the rest is the
    store's page (``StoredPage``)."""

    topic: str
    events: list[StoredEvent]
    last_seq: int = 0
    more: bool = False


_subscribe_decoder = msgspec.json.Decoder(HooksSubscribe)
_PRINTABLE = re.compile(r"[!-~]+")
_SEQ = re.compile(rb'\{"seq":(\d+),')


def check_patterns(patterns: list[str], what: str = "subject pattern") -> None:
    """A :class:`BadRequest` naming the first pattern NATS would not take as ours."""
    for p in patterns:
        if len(p.encode()) > limits.MAX_SUBJECT_BYTES:
            raise BadRequest(
                f"invalid {what}: {len(p.encode())} bytes, over the limit of "
                f"{limits.MAX_SUBJECT_BYTES} (MAX_SUBJECT_BYTES)"
            )
        if not _PRINTABLE.fullmatch(p) or not valid_pattern(p):
            raise BadRequest(f"invalid {what}: {p[:80]!r} is not a subject pattern")


TOPIC_ALIASES = {
    "on_perf_budget_state": "budget.state",
    "on_perf_profiler_snapshot": "profiler.snapshot",
    "podSpawned": "cloud.pod.spawned",
    "podTerminated": "cloud.pod.terminated",
    "jobCompleted": "job.succeeded",
    "costUpdated": "cloud.cost.updated",
}
"""Topic names the existing modder clients use, for the event types they mean."""


def topic_pattern(topic: str) -> str:
    """``job`` means every ``job.*`` subject; an exact type or a pattern stays as
    given; an alias (:data:`TOPIC_ALIASES`) is its event type."""
    topic = TOPIC_ALIASES.get(topic, topic)
    if "*" in topic or ">" in topic or topic in event_types():
        return topic
    return topic.rstrip(".") + ".>"


async def hooks(request: web.Request, inputs: Inputs) -> web.Response:
    """The store's page as it came, with the ``topic`` it matched."""
    q: HooksQuery = inputs.query
    pattern = topic_pattern(q.topic)
    check_patterns([pattern], what="query: topic")
    req = StoreReadRequest(limit=q.limit, patterns=[pattern], last=True)
    raw = await request.app[CALLER].call_raw(STORE_READ, msgspec.json.encode(req))
    topic = b'"topic":' + msgspec.json.encode(pattern)
    return web.Response(body=ok_body(raw, topic), content_type="application/json")


async def hooks_ws(request: web.Request, inputs: Inputs) -> web.WebSocketResponse:
    """Query ``subjects`` (comma-separated patterns) and ``after``, or a first
    client message ``{"subjects": [...], "after": N}``. Then one text frame per
    event: ``{"seq": N, "event": {...}}``. A bad subscription gets one
    ``{ok: false, error}`` frame and the close code ``CLOSE_BAD_SUBSCRIPTION``."""
    send_timeout = request.app[SETTINGS].ws_send_timeout_s
    ws = web.WebSocketResponse(  # no compression: a deflate context per client costs ~256 KiB
        heartbeat=30, max_msg_size=MAX_FRAME_BYTES, timeout=send_timeout, compress=False
    )
    await ws.prepare(request)
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    request.app[SOCKETS][ws] = request
    try:
        sub = await _subscription(request, ws)
        if sub is None:
            return ws
        task = asyncio.create_task(_pump(request, ws, sub, send_timeout))
        try:
            async for msg in ws:  # the client may only close; other frames are ignored
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        request.app[SOCKETS].pop(ws, None)
    return ws


async def _subscription(request: web.Request, ws: web.WebSocketResponse) -> HooksSubscribe | None:
    try:
        if "subjects" in request.query or "after" in request.query:
            params: dict[str, object] = dict(request.query)
            params.pop(TOKEN_PARAM, None)  # the guard's, checked before this handler ran
            raw = str(params.pop("subjects", ">"))
            if raw.count(",") >= limits.MAX_PATTERNS:
                raise BadRequest(f"more than {limits.MAX_PATTERNS} subjects (MAX_PATTERNS)")
            params["subjects"] = [s for s in raw.split(",") if s]
            sub = convert_params(params, HooksSubscribe)
        else:
            first = await ws.receive(timeout=SUBSCRIBE_TIMEOUT_S)
            if first.type != WSMsgType.TEXT:
                raise BadRequest("expected a JSON subscription message")
            sub = limits.decode(
                _subscribe_decoder, first.data, max_bytes=MAX_FRAME_BYTES, what="subscription"
            )
        sub = msgspec.structs.replace(sub, subjects=[TOPIC_ALIASES.get(s, s) for s in sub.subjects])
        check_patterns(sub.subjects)
        return sub
    except (msgspec.ValidationError, msgspec.DecodeError, BadRequest, TimeoutError) as e:
        error = str(e) or "no subscription message in time"
        with contextlib.suppress(ConnectionError):
            await ws.send_json({"ok": False, "error": f"invalid subscription: {error}"})
        reason, timeout = "invalid subscription", SUBSCRIBE_TIMEOUT_S
        await _close(request, ws, CLOSE_BAD_SUBSCRIPTION, reason, timeout)
        return None


async def _pump(
    request: web.Request, ws: web.WebSocketResponse, sub: HooksSubscribe, timeout: float
) -> None:
    """Send followed events until the client closes, falls behind, or the store fails."""
    last = sub.after
    try:
        events = request.app[FOLLOWER](sub.subjects, sub.after, max_buffer_bytes=WS_BUFFER_BYTES)
        async for item in events:
            seq = _SEQ.match(item)
            if seq is not None:  # the frame is buffered before send_frame can time out
                last = int(seq.group(1))
            async with asyncio.timeout(timeout):
                await ws.send_frame(item, WSMsgType.TEXT)
    except TimeoutError:
        await _close(request, ws, CLOSE_TOO_SLOW, _too_slow(last), timeout)
        return
    except FollowerBehind as e:
        await _close(request, ws, CLOSE_TOO_SLOW, _too_slow(max(last or 0, e.last)), timeout)
        return
    except GpurouteError as e:  # FollowError: the store cannot be read
        await _fail(request, ws, str(e), timeout)
        return
    except ConnectionError:
        pass
    await _close(request, ws, 1000, "", timeout)


def _too_slow(last: int | None) -> str:
    if last is None:
        return "too slow: reconnect with after=<the last seq you received>"
    return f"too slow: reconnect with after={last}"


async def _fail(
    request: web.Request, ws: web.WebSocketResponse, error: str, timeout: float
) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(timeout):
            await ws.send_json({"ok": False, "error": error})
    await _close(request, ws, 1011, "error", timeout)


async def _close(
    request: web.Request, ws: web.WebSocketResponse, code: int, reason: str, timeout: float
) -> None:
    """Close within ``timeout``. A client that does not read finds the close
    frame behind its unread data if it reads within ``CLOSE_GRACE_S``; then its
    connection is dropped (which also ends the handler waiting on it)."""
    transport = request.transport
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code=code, message=reason.encode()[:123])
    except (TimeoutError, ConnectionError):
        if transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)


async def close_all(app: web.Application) -> None:
    """On shutdown: a close frame to every client that takes it within a second,
    then every connection dropped, so no stalled client holds the shutdown."""
    sockets = app[SOCKETS]
    clients = list(sockets.items())
    await asyncio.gather(
        *(_close(request, ws, 1001, "server shutting down", 1.0) for ws, request in clients)
    )
    for _, request in clients:
        if request.transport is not None:
            request.transport.abort()
