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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.micro.request import Request

from schemas import limits
from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger

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
            await self._slots.acquire()
            try:
                self._spawn(self._serve(handle, req), "request")
            except BaseException:
                self._slots.release()
                raise

        return start

    async def _serve(self, handle: MicroHandler, req: Request) -> None:
        self.busy += 1
        try:
            await handle(req)
        finally:
            self.busy -= 1
            self._slots.release()


def endpoint(
    request_type: type[Req],
    handler: Callable[[Req], Awaitable[Any]],
    *,
    max_bytes: int = limits.MAX_EVENT_BYTES,
    in_flight: InFlight | None = None,
) -> MicroHandler:
    """A micro handler for ``handler``; bodies over ``max_bytes`` are a 400.
    With ``in_flight``, each request runs in a task of its own (see :class:`InFlight`)."""
    decoder = msgspec.json.Decoder(request_type)
    what = f"{request_type.__name__} request"

    async def handle(req: Request) -> None:
        try:
            body = req.data
            # an empty body is an empty object: defaults, or a 400 naming a required field
            raw = body if body.strip() else b"{}"
            request = limits.decode(decoder, raw, max_bytes=max_bytes, what=what)
            result = await handler(request)
            reply = result if isinstance(result, bytes) else _encoder.encode(result)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            await _error(req, "400", f"invalid request: {e}")
        except EndpointError as e:
            await _error(req, str(e.code), e.message)
        except ServiceCallError as e:
            await _error(req, str(e.code), e.description)
        except Exception as e:
            log.exception("endpoint failed", extra={"fields": {"subject": req.subject}})
            await _error(req, "500", f"internal error: {type(e).__name__}: {e}")
        else:
            await _send(req, reply)

    return handle if in_flight is None else in_flight.wrap(handle)


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
