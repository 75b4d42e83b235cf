"""The gateway's HTTP server: JSON answers for what aiohttp refuses before any
handler runs, and bounded time to receive a request.

aiohttp's parser answers a request it cannot parse (a request line or header
over 8,190 bytes, a malformed header, a bad method) with a plain-text 400 and
logs a traceback. :class:`JsonRequestHandler` answers those with the gateway's
JSON envelope and logs one line (at debug for non-HTTP bytes on a fresh
connection: scanners and TLS hellos are routine).

Time bounds: ``keepalive_timeout`` closes a connection whose request headers
have not all arrived within ``[gateway] request_timeout_s`` (from the
connection's start or the previous response), so a client trickling headers
holds nothing for long; bodies are read within the same bound by
:func:`services.gateway.parsing.read_raw` (a 408). ``lingering_time`` bounds
how long the unread rest of a refused body is drained before closing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from services.gateway.errors import error_response, status_of
from services.runtime.logs import get_logger

log = get_logger("gateway")
LINGER_S = 2.0


class JsonRequestHandler(RequestHandler):
    """aiohttp's protocol handler with a JSON ``handle_error``."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of a response went out: only closing is left
            raise ConnectionError("response already started, cannot send the error")
        if status >= 500 and exc is not None:
            text = status_of(exc)[1]
            log.error("request failed", exc_info=exc, extra={"fields": {"status": status}})
        else:
            text = " ".join((message or (str(exc) if exc else "") or "bad request").split())
            text = f"malformed request: {text[:300]}"
            level = log.debug if isinstance(exc, BadHttpMethod) else log.warning
            level(
                "malformed request",
                extra={"fields": {"remote": request.remote, "status": status, "reason": text}},
            )
        return error_response(status, text, close=True)


class _JsonServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use :class:`JsonRequestHandler`."""

    def __init__(self, app: web.Application, *, request_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(
            app,
            keepalive_timeout=request_timeout_s,
            lingering_time=min(LINGER_S, request_timeout_s),
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
