"""``GET /health``: 200 only when every part gpuroute needs is there and well.

503 with ``problems`` (one sentence each) when NATS is disconnected, the store
does not answer or reports problems of its own (``StoreStats.problems``), an
expected service (``[gateway] expect_services``; ``gpuroute up`` adds every
service it starts) has no fresh heartbeat (stale after 3 missed), or a fresh
heartbeat names faulted tasks (``Heartbeat.faults``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from schemas import limits
from schemas.subjects import STORE_STATS
from schemas.system import StoreStats
from services.gateway.state import CALLER, HEARTBEATS, SETTINGS
from services.gateway.table import Inputs
from services.runtime.errors import GpurouteError

STORE_TIMEOUT_S = 2.0
_stats = msgspec.json.Decoder(StoreStats)


class HealthReply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of ``/health`` (the document's schema of it)."""

    ok: bool
    problems: list[str]
    """One sentence per problem; empty when ``ok``."""
    nats: dict[str, bool]
    store: dict[str, Any]
    """``ok`` and the store's ``StoreStats``, or ``ok: false`` and ``error``."""
    services: dict[str, list[dict[str, Any]]]
    """Per service, its instances: the newest heartbeat, ``age_s``, ``stale``."""
    heartbeats: dict[str, int]


async def health(request: web.Request, inputs: Inputs) -> web.Response:
    caller, beats = request.app[CALLER], request.app[HEARTBEATS]
    problems: list[str] = []
    body: dict[str, Any] = {"nats": {"connected": caller.connected}}
    if not caller.connected:
        problems.append("nats: not connected")
    try:
        raw = await caller.call_raw(STORE_STATS, b"{}", timeout=STORE_TIMEOUT_S)
        stats = limits.decode(_stats, raw, what="store stats")
    except (GpurouteError, msgspec.MsgspecError) as e:
        body["store"] = {"ok": False, "error": str(e)}
        problems.append(f"store: {e}")
    else:
        store_problems = list(stats.problems)
        body["store"] = {"ok": not store_problems, **msgspec.structs.asdict(stats)}
        problems.extend(f"store: {p}" for p in store_problems)
    problems.extend(beats.problems(request.app[SETTINGS].expect_services))
    body["services"] = beats.snapshot()
    body["heartbeats"] = {"ignored": beats.ignored, "malformed": beats.malformed,
                          "tracked_max": beats.max_instances}  # fmt: skip
    body["problems"] = problems
    body["ok"] = not problems
    return web.json_response(body, status=503 if problems else 200)
