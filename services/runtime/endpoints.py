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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


def endpoint(
    request_type: type[Req],
    handler: Callable[[Req], Awaitable[Any]],
    *,
    max_bytes: int = limits.MAX_EVENT_BYTES,
) -> Callable[[Request], Awaitable[None]]:
    """A micro handler for ``handler``; bodies over ``max_bytes`` are a 400."""
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

    return handle


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
