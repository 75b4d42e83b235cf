"""How every gateway failure becomes JSON ``{ok: false, error: "..."}``.

One envelope (:func:`error_response`) and one map from exceptions to status
codes (:func:`status_of`), used by the middleware for everything a handler
raises and by :mod:`services.gateway.server` for what aiohttp refuses before a
handler runs (a request line over 8,190 bytes, a bad header, a body that
does not arrive in time):

    HttpError (status, message)   our own: BadRequest 400, RequestTimeout 408
    web.HTTPException             aiohttp's keep their status (404 unknown route, 405, 413)
    msgspec Decode/ValidationError 400, msgspec's message with the JSON path
    RequestPayloadError           400, a body aiohttp cannot de-chunk or decompress
    ServiceCallError              the service's code (400/404/409...; 503 none answers, 504)
    other GpurouteError           502
    ConnectionError               the client went away: logged at debug, no answer is possible
    anything else                 500, logged once with its traceback
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger

log = get_logger("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(GpurouteError):
    """A request the gateway refuses, with the status to answer."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(HttpError):
    status = 400


class RequestTimeout(HttpError):
    """The client did not send its request (or body) in time; the connection is closed."""

    status = 408


def error_response(status: int, message: str, *, close: bool = False) -> web.Response:
    """The one error envelope; ``close`` ends the connection after it (the
    request's bytes cannot be trusted to end where the next request starts)."""
    response = web.json_response({"ok": False, "error": message}, status=status)
    if close:
        response.force_close()
    return response


def status_of(exc: BaseException) -> tuple[int, str]:
    """The status and message for a failure (see the module docstring)."""
    if isinstance(exc, HttpError):
        return exc.status, str(exc)
    if isinstance(exc, web.HTTPException):
        return exc.status, _http_message(exc)
    if isinstance(exc, (msgspec.ValidationError, msgspec.DecodeError)):
        return 400, f"invalid body: {exc}"
    if isinstance(exc, RequestPayloadError):
        return 400, f"invalid body: {exc}"
    if isinstance(exc, ServiceCallError):
        return (exc.code if 400 <= exc.code <= 599 else 502), exc.description
    if isinstance(exc, GpurouteError):
        return 502, str(exc)
    return 500, f"internal error: {type(exc).__name__}"


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 413:  # aiohttp's text names the limit and the size
        return exc.text or exc.reason
    return exc.reason


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 404:
            return error_response(404, f"no route for {request.method} {request.path}")
        status, message = status_of(e)
        return error_response(status, message)
    except ConnectionError as e:
        log.debug("client went away", extra={"fields": {"path": request.path, "reason": str(e)}})
        return error_response(499, "client closed the connection", close=True)
    except Exception as e:
        status, message = status_of(e)
        if status >= 500 and not isinstance(e, GpurouteError):
            log.exception("unhandled", extra={"fields": {"path": request.path}})
        return error_response(status, message, close=status in (400, 408) and _unread(request))


def _unread(request: web.Request) -> bool:
    """Whether part of the body may still be on the wire (so the connection
    cannot carry another request)."""
    return request.body_exists and not request.content.is_eof()
