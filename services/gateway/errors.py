"""How every gateway failure becomes JSON ``{ok: false, error: "..."}``.

One envelope (:func:`error_response`) and one map from exceptions to status
codes (:func:`status_of`), used by the middleware for everything a handler
raises and by :mod:`services.gateway.server` for what aiohttp refuses before a
handler runs (a request line over 8,190 bytes, a bad header, a body that
does not arrive in time). The gateway's own exceptions::

    GatewayError (GpurouteError)  502: the gateway cannot serve the route (a reply
    |                             that is not a JSON object, a port in use at start)
    +-- HttpError (status)        a request the gateway refuses
        +-- BadRequest            400
        +-- RequestTimeout        408, the connection is closed

and how every failure maps:

    HttpError                     its status and message
    web.HTTPException             aiohttp's keep their status (404 unknown route, 405, 413)
    msgspec Decode/ValidationError 400, msgspec's message with the JSON path
    RequestPayloadError           400, a body aiohttp cannot de-chunk or decompress
    ServiceCallError              the service's code (400/404/409...; 503 none answers, 504);
                                  an adapter failure (``schemas.adapters.AdapterFailure``)
                                  answers its fields, and a 429 its ``Retry-After``
    other GpurouteError           502
    ConnectionError               the client went away: logged at debug, no answer is possible
    anything else                 500, logged once with its traceback
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from schemas.adapters import decode_failure
from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger

log = get_logger("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayError(GpurouteError):
    """Root of the gateway's errors (see the module docstring)."""


class HttpError(GatewayError):
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


def service_error_response(exc: ServiceCallError) -> web.Response:
    """A service's error: an adapter failure keeps its fields (``{ok: false, error,
    kind, provider, call, reason, provider_status?, retry_after_s?}``) and a 429
    says ``Retry-After``; any other is the plain envelope."""
    status, message = status_of(exc)
    failure = decode_failure(exc.description)
    if failure is None:
        return error_response(status, message)
    response = web.Response(
        body=b'{"ok":false,' + msgspec.json.encode(failure)[1:],
        status=status,
        content_type="application/json",
    )
    retry_after = failure.retry_after_s
    if status == 429 and retry_after is not None and math.isfinite(retry_after):
        response.headers["Retry-After"] = str(math.ceil(max(retry_after, 0.0)))
    return response


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
    except ServiceCallError as e:
        return service_error_response(e)
    except Exception as e:
        status, message = status_of(e)
        if status >= 500 and not isinstance(e, GpurouteError):
            log.exception("unhandled", extra={"fields": {"path": request.path}})
        return error_response(status, message, close=status in (400, 408) and _unread(request))


def _unread(request: web.Request) -> bool:
    """Whether part of the body may still be on the wire (so the connection
    cannot carry another request)."""
    return request.body_exists and not request.content.is_eof()
