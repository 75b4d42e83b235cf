"""Typed request/reply endpoints on ``nats.micro``.

:func:`endpoint` turns ``async def handler(request: Req) -> Resp`` into a micro
handler: the body is decoded into ``Req`` (an empty body means ``{}``), the
reply is JSON-encoded (``bytes`` pass through untouched). Failures become
micro service errors (``Nats-Service-Error-Code`` / ``Nats-Service-Error``):
400 with msgspec's message (it names the bad field), the code of a raised
:class:`EndpointError`, 500 for anything unexpected (logged). A handler can
never take its service down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from nats.micro.request import Request

from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger

log = get_logger("endpoints")
Req = TypeVar("Req")

_encoder = msgspec.json.Encoder()


class EndpointError(GpurouteError):
    """Raise inside a handler to answer with ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}")


def endpoint(
    request_type: type[Req], handler: Callable[[Req], Awaitable[Any]]
) -> Callable[[Request], Awaitable[None]]:
    decoder = msgspec.json.Decoder(request_type)

    async def handle(req: Request) -> None:
        try:
            body = req.data
            # an empty body is an empty object: defaults, or a 400 naming a required field
            request = decoder.decode(body if body.strip() else b"{}")
            result = await handler(request)
            await req.respond(result if isinstance(result, bytes) else _encoder.encode(result))
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            await req.respond_error("400", f"invalid request: {e}")
        except EndpointError as e:
            await req.respond_error(str(e.code), e.message)
        except ServiceCallError as e:
            await req.respond_error(str(e.code), e.description)
        except Exception as e:
            log.exception("endpoint failed", extra={"fields": {"subject": req.subject}})
            await req.respond_error("500", f"internal error: {type(e).__name__}: {e}")

    return handle
