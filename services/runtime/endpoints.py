"""Typed request/reply endpoints on ``nats.micro``.

:func:`endpoint` turns ``async def handler(request: Req) -> Resp`` into a micro
handler: the body is decoded into ``Req`` (an empty body means ``{}``) through
``limits.decode``, so oversize, over-deep, invalid UTF-8 and ill-typed bodies
are all the same 400 naming the problem. The reply is JSON-encoded (``bytes``
pass through untouched). Failures become micro service errors
(``Nats-Service-Error-Code`` / ``Nats-Service-Error``): 400 with msgspec's
message (it names the bad field), the code of a raised :class:`EndpointError`,
500 for anything unexpected (logged). A handler can never take its service
down, and the returned coroutine never raises: a request without a reply
subject, or a reply that cannot be sent (connection gone, reply too large),
is logged and dropped.

Concurrency: nats-py hands a subscription's messages to its callback one at a
time, so a handler that awaits I/O (a JetStream ack, a provider's HTTP API)
would serve one request per subject per round trip. ``endpoint(...,
in_flight=InFlight(n, self.spawn))`` runs each request in a task of its own,
at most ``n`` at once across every endpoint sharing that :class:`InFlight`.

A command that only queues its request on a writer needs no task at all:
``endpoint(..., take=take)`` calls ``take(request, Pending(req))`` inside the
subscription's callback, right after decoding; when it returns True it has
taken the request and answers it later through :class:`Pending` (the writer
answers, in order, once its events are acknowledged); False serves it as
usual. Each task costs a few tens of microseconds of scheduling per request,
as much as the decision it waits for. The ``nats.micro`` processing time of a
taken request covers its decoding and queuing only. :func:`tap_requests`
goes further for a service whose commands are hot: the endpoint's messages
come from the client's tap (``services/runtime/tap.py``) and are taken in the
parser's step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.micro.request import Request

from schemas import limits
from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger
from services.runtime.tap import tap_sid

log = get_logger("endpoints")
Req = TypeVar("Req")

_encoder = msgspec.json.Encoder()
MAX_ERROR_TEXT = 1000
"""Longest error description sent: it travels in a header, one line."""


class EndpointError(GpurouteError):
    """Raise inside a handler to answer with ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}")


def error_text(text: str) -> str:
    """One line of at most ``MAX_ERROR_TEXT`` characters: the description is a
    NATS header, where a line break would end the header block (the server
    then closes the connection) and the whole reply must fit ``max_payload``."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_ERROR_TEXT else line[: MAX_ERROR_TEXT - 3] + "..."


MicroHandler = Callable[[Request], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class Pending:
    """A request taken by ``endpoint(..., take=...)``: answer it exactly once,
    with :meth:`reply` or :meth:`fail`. Neither raises: a reply that cannot be
    sent is logged and dropped, as :func:`endpoint` does."""

    __slots__ = ("req",)

    def __init__(self, req: Request) -> None:
        self.req = req

    async def reply(self, result: Any) -> None:
        """Send ``result`` (JSON-encoded; ``bytes`` as they are)."""
        await _send(self.req, result if isinstance(result, bytes) else _encoder.encode(result))

    async def fail(self, error: BaseException) -> None:
        """Answer with the error reply :func:`endpoint` makes of ``error``."""
        await _fail(self.req, error)


class InFlight:
    """Requests served each in a task of its own, at most ``limit`` at once.

    ``spawn`` starts the tasks (a service's ``Service.spawn``, so that stopping
    the service cancels them). The micro callback waits for a free slot before
    it starts a task: past ``limit`` the subscription's pending buffer fills
    (nats-py's slow-consumer bounds) instead of tasks piling up without end.
    Tasks start in arrival order and run until their first pause in that
    order, so a handler that queues work before it awaits keeps the order of
    requests."""

    def __init__(self, limit: int, spawn: Spawn) -> None:
        if limit < 1:
            raise ValueError(f"in-flight limit must be at least 1, not {limit}")
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._spawn = spawn
        self.busy = 0
        """Requests being served now."""

    def wrap(self, handle: MicroHandler) -> MicroHandler:
        async def start(req: Request) -> None:
            await self.start(lambda: handle(req))

        return start

    async def start(self, serve: Callable[[], Awaitable[None]]) -> None:
        """Run ``serve()`` in a task of its own once a slot is free (called in
        the task: a task cancelled before it runs leaves no coroutine behind)."""
        await self._slots.acquire()
        try:
            self._spawn(self._serve(serve), "request")
        except BaseException:
            self._slots.release()
            raise

    async def _serve(self, serve: Callable[[], Awaitable[None]]) -> None:
        self.busy += 1
        try:
            await serve()
        finally:
            self.busy -= 1
            self._slots.release()


Take = Callable[[Any, Pending], bool]


def endpoint(
    request_type: type[Req],
    handler: Callable[[Req], Awaitable[Any]],
    *,
    max_bytes: int = limits.MAX_EVENT_BYTES,
    in_flight: InFlight | None = None,
    take: Callable[[Req, Pending], bool] | None = None,
) -> MicroHandler:
    """A micro handler for ``handler``; bodies over ``max_bytes`` are a 400.
    With ``in_flight``, each request runs in a task of its own (see :class:`InFlight`);
    with ``take``, a request it takes is answered later without one (module docstring).
    An exception raised by ``take`` is that request's error reply."""
    decoder = msgspec.json.Decoder(request_type)
    what = f"{request_type.__name__} request"

    def decode(req: Request) -> Req:
        body = req.data
        # an empty body is an empty object: defaults, or a 400 naming a required field
        raw = body if body.strip() else b"{}"
        return limits.decode(decoder, raw, max_bytes=max_bytes, what=what)

    async def serve(req: Request, request: Req) -> None:
        try:
            result = await handler(request)
            reply = result if isinstance(result, bytes) else _encoder.encode(result)
        except Exception as e:
            await _fail(req, e)
        else:
            await _send(req, reply)

    async def handle(req: Request) -> None:
        try:
            request = decode(req)
        except Exception as e:
            await _fail(req, e)
            return
        await serve(req, request)

    if take is None:
        return handle if in_flight is None else in_flight.wrap(handle)
    took = take

    def fast(req: Request) -> Coroutine[Any, Any, None] | None:
        try:
            request = decode(req)
            if took(request, Pending(req)):
                return None
        except Exception as e:
            return _fail(req, e)
        if in_flight is None:
            return serve(req, request)
        return in_flight.start(lambda: serve(req, request))

    return Taking(fast)


class Taking:
    """The micro handler of an endpoint with ``take`` (:func:`endpoint`).
    :attr:`fast` is the same without awaiting: None when the request was
    taken, else what is left to await (its error reply, or its start in a
    task of ``in_flight``); :func:`tap_requests` calls it from the tap."""

    __slots__ = ("fast",)

    def __init__(self, fast: Callable[[Request], Coroutine[Any, Any, None] | None]) -> None:
        self.fast = fast

    async def __call__(self, req: Request) -> None:
        rest = self.fast(req)
        if rest is not None:
            await rest


BACKLOG = 65_536
"""Requests of a tapped endpoint waiting behind one that ``take`` refused
(as nats-py's subscription queue held them); past it, a 503."""


def tap_requests(
    micro: Any, name: str, handler: Taking, spawn: Spawn, limit: int = BACKLOG
) -> None:
    """Serve endpoint ``name`` of ``micro`` (a started ``nats.micro`` service,
    added with ``handler``) from the client's tap (``services/runtime/tap.py``):
    each request is decoded and taken in the parser's step, with no ``Msg``
    header parsing, subscription queue, task wake-up or micro dispatch (about
    10-15 us of a taken request's CPU). The read loop never waits: once
    ``take`` refuses a request (not ready, or its writer has enough waiting),
    that request and every one after it, in arrival order, are served by one
    task as the micro callback served them (waiting for readiness or an
    ``InFlight`` slot), until none waits; past ``limit`` waiting, a 503 naming
    the backlog. Request headers are not read (no endpoint here reads them).
    ``$SRV.STATS`` counts every request; its processing time covers the
    untapped ones only. nats-py is pinned below 3: this reads the endpoint's
    subscription from ``nats.micro``'s internals."""
    found = [e for e in micro._endpoints if e._name == name]
    sub = found[0]._subscription if found else None
    if sub is None:
        raise ValueError(f"no started endpoint {name!r} to tap")
    ep, nc, sid = found[0], sub._conn, sub._id
    backlog: deque[Coroutine[Any, Any, None]] = deque()
    draining = False

    async def drain() -> None:
        nonlocal draining
        try:
            while backlog:
                await backlog.popleft()
        finally:
            draining = False
            while backlog:  # stopped: what never ran must not linger as coroutines
                backlog.popleft().close()

    def on_request(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        nonlocal draining
        msg = Msg(nc, subject.decode(errors="replace"), reply.decode(errors="replace"), data)
        msg._sid = sid
        req = Request(msg)
        ep._num_requests += 1
        if draining:  # behind what waits (or is being served), in arrival order
            if len(backlog) >= limit:
                ep._num_errors += 1
                spawn(_error(req, "503", f"busy: {len(backlog)} requests waiting; retry"), "busy")
                return
            backlog.append(handler(req))
        else:
            rest = handler.fast(req)
            if rest is None:
                return  # taken: answered later, in order, by its writer
            backlog.append(rest)
        if not draining:
            draining = True
            spawn(drain(), "backlog")

    tap_sid(nc, sid, on_request)


async def _fail(req: Request, e: BaseException) -> None:
    """The error reply for ``e``: 400 for a bad body, an endpoint error's own
    code, a failed call's code, else 500 (logged)."""
    if isinstance(e, msgspec.ValidationError | msgspec.DecodeError):
        await _error(req, "400", f"invalid request: {e}")
    elif isinstance(e, EndpointError):
        await _error(req, str(e.code), e.message)
    elif isinstance(e, ServiceCallError):
        await _error(req, str(e.code), e.description)
    else:
        log.error("endpoint failed", exc_info=e, extra={"fields": {"subject": req.subject}})
        await _error(req, "500", f"internal error: {type(e).__name__}: {e}")


async def _send(req: Request, reply: bytes) -> None:
    try:
        await req.respond(reply)
    except nats.errors.MaxPayloadError:
        log.error("reply too large", extra={"fields": {"subject": req.subject,
                                                      "bytes": len(reply)}})  # fmt: skip
        await _error(req, "500", f"internal error: reply of {len(reply)} bytes is too large")
    except (ValueError, nats.errors.Error) as e:  # ValueError: no reply subject
        log.debug("reply not sent", extra={"fields": {"subject": req.subject, "error": str(e)}})


async def _error(req: Request, code: str, text: str) -> None:
    try:
        await req.respond_error(code, error_text(text))
    except (ValueError, nats.errors.Error) as e:
        log.debug("error reply not sent", extra={"fields": {"subject": req.subject,
                                                            "error": str(e)}})  # fmt: skip


async def reply_many(replies: list[tuple[Pending, Any]]) -> None:
    """Answer many taken requests at once: each result JSON-encoded (``bytes``
    as they are), all of them written as raw ``PUB`` frames in one command
    and one flush (as the store's broadcast sends), instead of a
    ``publish`` per reply (header checks, a command and a flush signal each:
    the most of a reply's cost). Requests whose client is not connected, with
    no reply subject, or whose reply is over ``max_payload`` are answered one
    by one through :meth:`Pending.reply` (which logs what it cannot send).
    Never raises for a reply that cannot be sent."""
    frames: list[bytes] = []
    nc = None
    for pending, result in replies:
        msg = pending.req._msg
        payload = result if isinstance(result, bytes) else _encoder.encode(result)
        client = msg._client
        if nc is None and client.is_connected:
            nc = client
        if client is not nc or not msg.reply or len(payload) > client.max_payload:
            await _send(pending.req, payload)
            continue
        frames.append(b"PUB %s %d\r\n%s\r\n" % (msg.reply.encode(), len(payload), payload))
    if nc is None or not frames:
        return
    try:
        await nc._send_command(b"".join(frames))
        nc.stats["out_msgs"] += len(frames)
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()
    except (ValueError, nats.errors.Error) as e:
        log.debug("replies not sent", extra={"fields": {"replies": len(frames), "error": str(e)}})
