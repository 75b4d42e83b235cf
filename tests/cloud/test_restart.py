"""A restarted cloud service answers only once it holds every reservation JetStream
holds, including one the store has not committed yet (services/runtime/catch_up.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from schemas.cloud import RESERVE, ReserveAnswer, ReserveRequest
from services.cloud.service import CloudService
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.cloud.cloud_support import running_cloud
from tests.support import EventWatch

SETTINGS: dict[str, Any] = {
    "daily_cost_limit": 0.025,
    "serverless_price_per_s": 0.001,
    "check_interval_s": 30.0,
}
"""A call of 10 s holds $0.01: two fit under the cap, a third does not."""


async def reserve(bus: Bus, ref: str) -> ReserveAnswer:
    return await bus.call(RESERVE, ReserveRequest(ref=ref, max_s=10.0), ReserveAnswer, 10)


async def test_a_restart_counts_reservations_the_store_has_not_committed_yet(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    cloud = msgspec.structs.replace(config.cloud, **SETTINGS)
    cloud = msgspec.structs.replace(cloud, pods=msgspec.structs.replace(cloud.pods, dry_run=True))
    restarted = await Bus.connect(config.nats.url or "", source="cloud")
    service = CloudService(restarted, msgspec.structs.replace(config, cloud=cloud))
    async with running_cloud(config, **SETTINGS) as first:
        assert (await reserve(bus, "a")).ok
        await stored.first("cloud.cost.reserved")
        await store._lock.acquire()  # the store lags: JetStream holds what follows, SQLite not
        assert (await reserve(bus, "b")).ok
    try:
        assert first.state.n == 2
        await service.start()
        await service.follower.loaded.wait()  # the store's log: only "a"
        assert "a" in service.state.held and "b" not in service.state.held
        assert not service.follower.ready.is_set()  # it waits for "b" to be stored
        early = asyncio.ensure_future(reserve(bus, "c"))  # the first answer, while waiting
    finally:
        store._lock.release()
    try:
        answer = await early
        assert not answer.ok and answer.reason.startswith("cost_cap"), answer
        assert {"a", "b"} <= set(service.state.held)
    finally:
        await service.stop()
        await restarted.close()
