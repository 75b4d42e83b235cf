"""Fixtures of the gateway tests: the real gateway on a real socket, alone (for
what it refuses before asking anyone) or in front of the store, the advisor
and the adapters running in-process against the test's nats-server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.config import Config


@contextlib.asynccontextmanager
async def running(factory: Any, config: Config, source: str, **kw: Any) -> AsyncIterator[Any]:
    bus = await Bus.connect(config.nats.url or "", source=source)
    service = factory(bus, config, **kw)
    try:
        await service.start()
        yield service
    finally:
        await service.stop()
        await bus.close()


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[GatewayService]:
    """The gateway alone (requests time out after 1 s, sends after 0.5 s)."""
    config.gateway.request_timeout_s = 1.0
    config.gateway.ws_send_timeout_s = 0.5
    async with running(GatewayService, config, "gateway") as service:
        yield service


@pytest.fixture
async def stack(config: Config) -> AsyncIterator[GatewayService]:
    """Store, adapters (dry-run: no secrets), advisor, budget, scheduler, cloud (dry-run
    pods) and gateway, as ``up`` starts them."""
    import msgspec

    from services.adapters.service import AdaptersService
    from services.advisor.service import AdvisorService
    from services.budget.service import BudgetService
    from services.cloud.service import CloudService
    from services.scheduler.service import SchedulerService
    from services.store.service import StoreService

    config.advisor.telemetry_interval_s = 3600
    config.gateway.request_timeout_s = 2.0
    config.ops.listen_s = 0.2  # doctor listens for heartbeats; 1 s a call adds up in a fuzz
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(StoreService, config, "store"))
        await stack.enter_async_context(running(AdaptersService, config, "adapters"))
        await stack.enter_async_context(running(AdvisorService, config, "advisor"))
        budget = await stack.enter_async_context(running(BudgetService, config, "budget"))
        await budget.follower.wait_ready(10)
        scheduler = await stack.enter_async_context(running(SchedulerService, config,
                                                            "scheduler"))  # fmt: skip
        await scheduler.follower.wait_ready(10)
        pods = msgspec.structs.replace(config.cloud.pods, dry_run=True)
        config.cloud = msgspec.structs.replace(config.cloud, pods=pods)
        cloud = await stack.enter_async_context(running(CloudService, config, "cloud"))
        await cloud.follower.wait_ready(10)
        yield await stack.enter_async_context(running(GatewayService, config, "gateway"))
