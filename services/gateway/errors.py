"""How every gateway failure becomes JSON ``{ok: false, error: "..."}``.

One middleware maps exceptions to status codes in one place: aiohttp's HTTP
errors keep their status (404 unknown route, 405 ...), a bad query or body is
400 with msgspec's message naming the field, a NATS service error keeps its
code (400/404/...; 503 when no service answers, 504 on timeout), anything
unexpected is a logged 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger

log = get_logger("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(GpurouteError):
    pass


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = e.reason if e.status != 404 else f"no route for {request.method} {request.path}"
        return error_response(e.status, message)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        return error_response(400, f"invalid body: {e}")
    except BadRequest as e:
        return error_response(400, str(e))
    except ServiceCallError as e:
        status = e.code if 400 <= e.code <= 599 else 502
        return error_response(status, e.description)
    except GpurouteError as e:
        return error_response(502, str(e))
    except Exception as e:
        log.exception("unhandled", extra={"fields": {"path": request.path}})
        return error_response(500, f"internal error: {type(e).__name__}")
