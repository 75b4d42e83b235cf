"""The gateway's ``GET /api/ops/doctor`` and ``GET /metrics`` (route-table rows
in services/gateway/routes.py name these handlers).

Both need the gateway's own NATS connection and config, which the gateway
service puts under :data:`OPS` after ``create_app``; an app without it (a
test's, with a fake caller) answers 503 naming what is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client

from services.ops import gpu, metrics
from services.ops.cluster import observe
from services.ops.doctor import Probes, run_doctor
from services.runtime.config import Config


@dataclass
class Ops:
    nc: Client
    config: Config
    expected: list[str]
    probes: Probes = field(default_factory=Probes)


OPS = web.AppKey("ops", Ops)


def _ops(request: web.Request) -> Ops:
    ops = request.app.get(OPS)
    if ops is None:
        raise web.HTTPServiceUnavailable(
            text='{"ok":false,"error":"this gateway has no NATS connection for ops checks"}',
            content_type="application/json",
        )
    return ops


async def doctor(request: web.Request, _: Any) -> web.Response:
    """Every doctor check; 200 when none failed, else 503 (the body says which)."""
    ops = _ops(request)
    report = await run_doctor(ops.nc, ops.config, ops.expected, url=str(ops.config.nats.url),
                              probes=ops.probes)  # fmt: skip
    return web.Response(body=msgspec.json.encode(report), status=200 if report.ok else 503,
                        content_type="application/json")  # fmt: skip


async def scrape(request: web.Request, _: Any) -> web.Response:
    """The Prometheus text format of :mod:`services.ops.metrics`."""
    ops = _ops(request)
    seen = await observe(ops.nc, min(ops.config.ops.listen_s, 1.0))
    found = await asyncio.to_thread(ops.probes.gpu, ops.probes.nvml)
    body = metrics.render(metrics.families(seen, found))
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


__all__ = ["OPS", "Ops", "doctor", "gpu", "scrape"]
