"""Gateway routes of the compute advisor: GPUs, providers, advice, costs, flags.

Every route validates its query or body with the strict request types of
``schemas/advisor.py`` and ``schemas/providers.py`` (a bad body is a 400 whose
message is msgspec's, with the JSON path of the bad field; a query parameter a
route does not know is a 400 naming every such parameter), then asks the
advisor over NATS request/reply and relays its JSON reply as
``{"ok": true, ...}``. Errors the advisor answers (400, 404 unknown provider,
409, 503 still loading) keep their code through ``errors.json_errors``. Bodies
are read as JSON whatever their Content-Type, so ``curl -d '{...}'`` works; an
empty body means defaults.

Routes:
  GET    /api/gpu/list?debug=1          devices, flags, the raw sample with debug
  POST   /api/compute/advise            AdvisorJobSpecBody -> Decision (no job is created)
  POST   /api/compute/costs             CostRequest -> CostPreview
  GET    /api/providers?kind=modal      every registered provider (of one kind)
  POST   /api/providers                 create (409 if the id exists)
  GET    /api/providers/stats           totals, by kind, storage, persisted
  GET    /api/providers/{id}            one profile (404 if unknown)
  PUT    /api/providers/{id}            create or replace (body ``id`` optional)
  DELETE /api/providers/{id}            remove (404 if unknown)
  GET    /api/flags                     every flag with its value and default
  PUT    /api/flags                     {"flags": {"features.enable_compute": true}}
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from schemas.advisor import (
    ADVISE_SUBJECT,
    COSTS_SUBJECT,
    FLAGS_GET_SUBJECT,
    FLAGS_SET_SUBJECT,
    GPUS_SUBJECT,
    AdvisorJobSpecBody,
    CostRequest,
    FlagsQuery,
    FlagsUpdate,
    GpuListRequest,
)
from schemas.providers import (
    PROVIDERS_DELETE_SUBJECT,
    PROVIDERS_GET_SUBJECT,
    PROVIDERS_LIST_SUBJECT,
    PROVIDERS_PUT_SUBJECT,
    PROVIDERS_STATS_SUBJECT,
    ProviderListQuery,
    ProviderProfileBody,
    ProviderPut,
    ProviderRef,
    ProvidersQuery,
)
from services.gateway.errors import BadRequest
from services.gateway.parsing import parse_query, path_params, read_body
from services.gateway.state import BUS
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError

QUERY_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
"""Commands wait for their event to come back from the store before replying."""


def ok_body(raw: bytes) -> bytes:
    """``{"ok":true, ...}`` from a JSON object reply."""
    inner = raw.strip()
    if not inner.startswith(b"{"):
        raise GpurouteError("the advisor answered something that is not a JSON object")
    rest = inner[1:].lstrip()
    return b'{"ok":true' + (b"}" if rest == b"}" else b"," + rest)


class ComputeRoutes:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _relay(
        self,
        subject: str,
        request: msgspec.Struct | bytes,
        *,
        status: int = 200,
        timeout: float = QUERY_TIMEOUT_S,
    ) -> web.Response:
        payload = request if isinstance(request, bytes) else msgspec.json.encode(request)
        raw = await self.bus.call_raw(subject, payload, timeout=timeout)
        return web.Response(body=ok_body(raw), status=status, content_type="application/json")

    async def gpu_list(self, request: web.Request) -> web.Response:
        return await self._relay(GPUS_SUBJECT, parse_query(request, GpuListRequest))

    async def advise(self, request: web.Request) -> web.Response:
        spec = await read_body(request, AdvisorJobSpecBody)
        return await self._relay(ADVISE_SUBJECT, spec)

    async def costs(self, request: web.Request) -> web.Response:
        body = await read_body(request, CostRequest)
        return await self._relay(COSTS_SUBJECT, body)

    async def list_providers(self, request: web.Request) -> web.Response:
        query = parse_query(request, ProviderListQuery)
        return await self._relay(PROVIDERS_LIST_SUBJECT, query)

    async def provider_stats(self, request: web.Request) -> web.Response:
        return await self._relay(PROVIDERS_STATS_SUBJECT, parse_query(request, ProvidersQuery))

    async def create_provider(self, request: web.Request) -> web.Response:
        profile = await read_body(request, ProviderProfileBody)
        put = ProviderPut(profile=profile, create=True)
        return await self._relay(PROVIDERS_PUT_SUBJECT, put, status=201, timeout=COMMAND_TIMEOUT_S)

    async def get_provider(self, request: web.Request) -> web.Response:
        parse_query(request, ProvidersQuery)
        ref = path_params(request, ProviderRef)
        return await self._relay(PROVIDERS_GET_SUBJECT, ref)

    async def put_provider(self, request: web.Request) -> web.Response:
        path_id = path_params(request, ProviderRef).id
        doc = await read_body(request, Any)
        if isinstance(doc, dict):
            doc.setdefault("id", path_id)
        profile = msgspec.convert(doc, ProviderProfileBody)
        if profile.id != path_id:
            raise BadRequest(
                f"invalid body: `id` {profile.id!r} differs from the path's {path_id!r} - at `$.id`"
            )
        put = ProviderPut(profile=profile)
        return await self._relay(PROVIDERS_PUT_SUBJECT, put, timeout=COMMAND_TIMEOUT_S)

    async def delete_provider(self, request: web.Request) -> web.Response:
        ref = path_params(request, ProviderRef)
        return await self._relay(PROVIDERS_DELETE_SUBJECT, ref, timeout=COMMAND_TIMEOUT_S)

    async def get_flags(self, request: web.Request) -> web.Response:
        return await self._relay(FLAGS_GET_SUBJECT, parse_query(request, FlagsQuery))

    async def put_flags(self, request: web.Request) -> web.Response:
        update = await read_body(request, FlagsUpdate)
        return await self._relay(FLAGS_SET_SUBJECT, update, timeout=COMMAND_TIMEOUT_S)


RESERVED_IDS = ("stats", "gpu")
"""Path segments under /api/providers/ that are routes, never provider ids."""
PROVIDER_ID = "/api/providers/{id:(?!(?:" + "|".join(RESERVED_IDS) + ")$)[^{}/]+}"


def add_routes(app: web.Application) -> None:
    """Register the advisor's routes on ``app`` (built by ``app.create_app``,
    whose bus they use). ``{id}`` never matches a reserved segment, so
    ``PUT /api/providers/stats`` is a 405 and ``/api/providers/gpu`` a 404,
    whatever order the routes are added in."""
    routes = ComputeRoutes(app[BUS])
    r = app.router
    r.add_get("/api/gpu/list", routes.gpu_list)
    r.add_post("/api/compute/advise", routes.advise)
    r.add_post("/api/compute/costs", routes.costs)
    r.add_get("/api/providers", routes.list_providers)
    r.add_post("/api/providers", routes.create_provider)
    r.add_get("/api/providers/stats", routes.provider_stats)
    r.add_get(PROVIDER_ID, routes.get_provider)
    r.add_put(PROVIDER_ID, routes.put_provider)
    r.add_delete(PROVIDER_ID, routes.delete_provider)
    r.add_get("/api/flags", routes.get_flags)
    r.add_put("/api/flags", routes.put_flags)
