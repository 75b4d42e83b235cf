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

from schemas.subjects import STORE_STATS
from schemas.system import StoreStats
from services.gateway.state import BUS, HEARTBEATS, SETTINGS
from services.runtime.errors import GpurouteError

STORE_TIMEOUT_S = 2.0


async def health(request: web.Request) -> web.Response:
    bus, beats = request.app[BUS], request.app[HEARTBEATS]
    problems: list[str] = []
    body: dict[str, Any] = {"nats": {"connected": bus.connected}}
    if not bus.connected:
        problems.append("nats: not connected")
    try:
        stats = await bus.call(STORE_STATS, {}, StoreStats, timeout=STORE_TIMEOUT_S)
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
