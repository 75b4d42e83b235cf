"""GPU provider routes: the adapters service over HTTP (``/api/providers/gpu/*``).

    POST /api/providers/gpu/health           body {provider?}; every provider when absent
    POST /api/providers/gpu/submit           body {provider, job: {input, job_id?, target?, seed?}}
    GET  /api/providers/gpu/poll/{id}        ?provider=NAME[&job_id=ID]
    POST /api/providers/gpu/cancel/{id}      ?provider=NAME[&job_id=ID]
    GET  /api/providers/gpu/providers        live or dry-run per provider, and what is missing
    POST /api/providers/gpu/simulate         body {provider, job, seed, profile?}

``{id}`` is the provider's remote id as ``submit`` returned it; the provider goes in the
query because remote ids of different providers may look alike. Bodies and queries are
strict: an unknown or bad field is a 400 naming it, and the routes that take no body
refuse one that has a field (an absent body or ``{}`` is fine). Numbers are bounded, so
``1e309`` (infinity in JSON) is a 400 too. Replies are the adapters service's replies
byte for byte (the simulate transcript included, so the same seed gives the same bytes).
A failed provider call is ``{ok: false, error, kind, provider, call, reason,
provider_status?, retry_after_s?}`` with the service's code (429 with ``Retry-After``,
502, 504, 404); every other failure goes through the gateway's ``json_errors``.
"""

from __future__ import annotations

import math

import msgspec
from aiohttp import web

from schemas.adapters import (
    CANCEL,
    HEALTH,
    POLL,
    PROVIDERS_SUBJECT,
    SIMULATE,
    SUBMIT,
    CancelRequest,
    HealthBody,
    NoBody,
    PollQuery,
    PollRequest,
    ProvidersRequest,
    SimulateBody,
    SubmitBody,
    decode_failure,
)
from services.gateway.parsing import parse_query, path_params, read_body
from services.gateway.state import BUS
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError

PROVIDER_CALL_TIMEOUT_S = 150.0
"""Longer than an adapter's own timeouts and retries, so the provider's answer (or its
error) comes back rather than a gateway timeout."""
LOCAL_CALL_TIMEOUT_S = 5.0
PREFIX = "/api/providers/gpu"


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"{PREFIX}/health", health)
    app.router.add_post(f"{PREFIX}/submit", submit)
    app.router.add_get(f"{PREFIX}/poll/{{id}}", poll)
    app.router.add_post(f"{PREFIX}/cancel/{{id}}", cancel)
    app.router.add_get(f"{PREFIX}/providers", providers)
    app.router.add_post(f"{PREFIX}/simulate", simulate)


async def health(request: web.Request) -> web.Response:
    body = await read_body(request, HealthBody)
    return await _call(request, HEALTH, body, PROVIDER_CALL_TIMEOUT_S)


async def submit(request: web.Request) -> web.Response:
    body = await read_body(request, SubmitBody)
    return await _call(request, SUBMIT, body, PROVIDER_CALL_TIMEOUT_S)


async def poll(request: web.Request) -> web.Response:
    await read_body(request, NoBody)
    query = parse_query(request, PollQuery)
    req = path_params(request, PollRequest, provider=query.provider, job_id=query.job_id)
    return await _call(request, POLL, req, PROVIDER_CALL_TIMEOUT_S)


async def cancel(request: web.Request) -> web.Response:
    await read_body(request, NoBody)
    query = parse_query(request, PollQuery)
    req = path_params(request, CancelRequest, provider=query.provider, job_id=query.job_id)
    return await _call(request, CANCEL, req, PROVIDER_CALL_TIMEOUT_S)


async def providers(request: web.Request) -> web.Response:
    await read_body(request, NoBody)
    return await _call(request, PROVIDERS_SUBJECT, ProvidersRequest(), LOCAL_CALL_TIMEOUT_S)


async def simulate(request: web.Request) -> web.Response:
    body = await read_body(request, SimulateBody)
    return await _call(request, SIMULATE, body, LOCAL_CALL_TIMEOUT_S)


async def _call(
    request: web.Request, subject: str, payload: msgspec.Struct, timeout: float
) -> web.Response:
    bus: Bus = request.app[BUS]
    try:
        raw = await bus.call_raw(subject, msgspec.json.encode(payload), timeout=timeout)
    except ServiceCallError as e:
        failure = decode_failure(e.description)
        if failure is None:
            raise  # json_errors maps it like any other service error
        headers = {}
        retry_after = failure.retry_after_s
        if e.code == 429 and retry_after is not None and math.isfinite(retry_after):
            headers["Retry-After"] = str(math.ceil(max(retry_after, 0.0)))
        body = b'{"ok":false,' + msgspec.json.encode(failure)[1:]
        return web.Response(
            body=body, status=e.code, headers=headers, content_type="application/json"
        )
    return web.Response(body=raw, content_type="application/json")
