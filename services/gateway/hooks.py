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
from typing import Annotated

import msgspec
from aiohttp import WSMsgType, web

from schemas import event_types, limits
from schemas.subjects import STORE_READ
from schemas.system import StoredEvent, StoreReadRequest, decode_page
from services.gateway.errors import BadRequest
from services.gateway.parsing import convert_params, parse_query
from services.gateway.state import BUS, SETTINGS, SOCKETS
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError
from services.runtime.follow import FollowError, follow, valid_pattern

CLOSE_BAD_SUBSCRIPTION = 4400
CLOSE_TOO_SLOW = 4008
MAX_FRAME_BYTES = 64 * 1024
"""A client frame (only the subscription message is read)."""
SUBSCRIBE_TIMEOUT_S = 30.0

Patterns = Annotated[
    list[limits.Pattern], msgspec.Meta(min_length=1, max_length=limits.MAX_PATTERNS)
]


class HooksQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    topic: limits.Pattern = ">"
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class HooksSubscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subjects: Patterns = msgspec.field(default_factory=lambda: [">"])
    after: limits.Position | None = None


class _Hooks(msgspec.Struct, kw_only=True):
    ok: bool = True
    topic: str
    events: list[StoredEvent]


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


def topic_pattern(topic: str) -> str:
    """``job`` means every ``job.*`` subject; an exact type or a pattern stays as given."""
    if "*" in topic or ">" in topic or topic in event_types():
        return topic
    return topic.rstrip(".") + ".>"


async def hooks(request: web.Request) -> web.Response:
    q = parse_query(request, HooksQuery)
    pattern = topic_pattern(q.topic)
    check_patterns([pattern], what="query: topic")
    req = StoreReadRequest(limit=q.limit, patterns=[pattern], last=True)
    raw = await request.app[BUS].call_raw(STORE_READ, msgspec.json.encode(req))
    page = decode_page(raw)
    body = msgspec.json.encode(_Hooks(topic=pattern, events=page.events))
    return web.Response(body=body, content_type="application/json")


async def hooks_ws(request: web.Request) -> web.WebSocketResponse:
    """Query ``subjects`` (comma-separated patterns) and ``after``, or a first
    client message ``{"subjects": [...], "after": N}``. Then one text frame per
    event: ``{"seq": N, "event": {...}}``. A bad subscription gets one
    ``{ok: false, error}`` frame and the close code ``CLOSE_BAD_SUBSCRIPTION``."""
    send_timeout = request.app[SETTINGS].ws_send_timeout_s
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME_BYTES, timeout=send_timeout)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        sub = await _subscription(request, ws)
        if sub is None:
            return ws
        task = asyncio.create_task(_pump(request.app[BUS], ws, sub, send_timeout))
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
            params: dict[str, object] = dict(request.query)
            raw = str(params.pop("subjects", ">"))
            if raw.count(",") >= limits.MAX_PATTERNS:
                raise BadRequest(
                    f"more than {limits.MAX_PATTERNS} subjects (MAX_PATTERNS)"
                )
            params["subjects"] = [s for s in raw.split(",") if s]
            sub = convert_params(params, HooksSubscribe)
        else:
            first = await ws.receive(timeout=SUBSCRIBE_TIMEOUT_S)
            if first.type != WSMsgType.TEXT:
                raise BadRequest("expected a JSON subscription message")
            sub = limits.decode(
                _subscribe_decoder, first.data, max_bytes=MAX_FRAME_BYTES, what="subscription"
            )
        check_patterns(sub.subjects)
        return sub
    except (msgspec.ValidationError, msgspec.DecodeError, BadRequest, TimeoutError) as e:
        error = str(e) or "no subscription message in time"
        with contextlib.suppress(ConnectionError):
            await ws.send_json({"ok": False, "error": f"invalid subscription: {error}"})
        await _close(ws, CLOSE_BAD_SUBSCRIPTION, "invalid subscription", SUBSCRIBE_TIMEOUT_S)
        return None


async def _pump(bus: Bus, ws: web.WebSocketResponse, sub: HooksSubscribe, timeout: float) -> None:
    """Send followed events until the client closes, falls behind, or the store fails."""
    last = sub.after
    try:
        async for item in follow(bus, sub.subjects, sub.after):
            async with asyncio.timeout(timeout):
                await ws.send_frame(item, WSMsgType.TEXT)
            seq = _SEQ.match(item)
            if seq is not None:
                last = int(seq.group(1))
    except TimeoutError:
        await _close(ws, CLOSE_TOO_SLOW, _too_slow(last), timeout)
        return
    except FollowError as e:
        if hasattr(e, "last"):  # FollowerBehind: its buffer overflowed
            resume = last if last is not None else getattr(e, "last", None)
            await _close(ws, CLOSE_TOO_SLOW, _too_slow(resume), timeout)
            return
        await _fail(ws, str(e), timeout)
        return
    except GpurouteError as e:
        await _fail(ws, str(e), timeout)
        return
    except ConnectionError:
        pass
    await _close(ws, 1000, "", timeout)


def _too_slow(last: int | None) -> str:
    if last is None:
        return "too slow: reconnect with after=<the last seq you received>"
    return f"too slow: reconnect with after={last}"


async def _fail(ws: web.WebSocketResponse, error: str, timeout: float) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(timeout):
            await ws.send_json({"ok": False, "error": error})
    await _close(ws, 1011, "error", timeout)


async def _close(ws: web.WebSocketResponse, code: int, reason: str, timeout: float) -> None:
    """Close within ``timeout``: a client that does not read gets the close
    frame queued behind its unread data and the transport closed under it."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            await ws.close(code=code, message=reason.encode()[:123])
