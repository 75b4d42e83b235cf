"""Helpers for the advisor's integration tests (test_service.py, test_http.py,
test_replay.py): the advisor and the gateway running in-process against the
test's nats-server and store, and ways to wait on what they publish."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from schemas import Event, decode_event
from schemas.telemetry import TelemetrySample
from services.advisor.service import AdvisorService
from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.telemetry.service import TelemetryService
from services.telemetry.sources import RecordedTelemetry
from tests.support import EventWatch, watch_stored

from .factories import gpu, sample

ONE_GPU = sample(gpu(free_mib=20 * 1024), sample_id="recorded")
NO_GPU = sample(sample_id="recorded")


@contextlib.asynccontextmanager
async def running_advisor(
    config: Config, telemetry: TelemetrySample = NO_GPU
) -> AsyncIterator[AdvisorService]:
    """An advisor beside this node's telemetry service, which publishes one
    recorded sample at start (then nothing moves: a keep-alive every hour)."""
    config.telemetry.keepalive_s = 3600
    bus = await Bus.connect(config.nats.url or "", source="advisor")
    sampler_bus = await Bus.connect(config.nats.url or "", source="telemetry")
    service = AdvisorService(bus, config)
    sampler = TelemetryService(sampler_bus, config, source=RecordedTelemetry([telemetry]))
    try:
        async with watch_stored(bus) as stored:
            await service.start()
            await sampler.start()
            await stored.folded(service.follower, "telemetry.sampled")
        assert await service.follower.wait_ready(10)  # loaded and seeded: answers
        yield service
    finally:
        await sampler.stop()
        await service.stop()
        await sampler_bus.close()
        await bus.close()


@contextlib.asynccontextmanager
async def running_gateway(config: Config) -> AsyncIterator[Http]:
    bus = await Bus.connect(config.nats.url or "", source="gateway")
    service = GatewayService(bus, config)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Http(session, service.url)
    finally:
        await service.stop()
        await bus.close()


class Http:
    """JSON over HTTP against the gateway; each call returns (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else msgspec.json.encode(body)
        async with self.session.request(method, self.base + path, data=data, **kw) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)


def stored_events(db: Path, type_: str | None = None) -> list[tuple[int, Event]]:
    """(seq, event) from the store's file, optionally of one type."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT seq, type, body FROM events ORDER BY seq").fetchall()
    return [(seq, decode_event(body)) for seq, t, body in rows if type_ in (None, t)]


async def advised(stored: EventWatch, keys: list[str], timeout: float = 10.0) -> dict[str, Event]:
    """Wait until the store holds a job.advised for every key; returns them by key."""

    def found() -> dict[str, Event] | None:
        got = {e.key: e for e in stored.matching("job.advised")}
        return got if set(keys) <= set(got) else None

    result: dict[str, Event] = await stored.until(found, f"job.advised of {keys}", timeout)
    return result


PROFILE: dict[str, Any] = {
    "id": "studio-box",
    "kind": "local_gpu",
    "name": "The studio's spare GPU box",
    "gpus": [{"gpu": "RTX 4090", "vram_gb": 24, "price_usd": 0.08, "unit": "hour"}],
    "price_snapshot": {"date": "2026-11-30", "source": "estimate: electricity"},
    "base_url": "http://10.0.0.7:8188",
}
