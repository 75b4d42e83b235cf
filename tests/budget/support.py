"""Helpers of the budget tests: the service in-process against the test's
nats-server and store, a client of its endpoints, recorded telemetry.

Inputs are published so that the test knows when they count: before the
service starts, once the store holds them (the service reads them while it
loads, before it is ready); while it runs, through its follower
(``publish_and_wait``), once it folded them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from schemas import budget as b
from schemas.flags import ENABLE_PERF, FlagsChanged
from schemas.telemetry import GpuDevice, HostStats, TelemetrySample
from services.budget.service import BudgetService
from services.runtime.bus import Bus
from services.runtime.clock import Clock
from services.runtime.config import Config
from tests.support import watch_stored


@contextlib.asynccontextmanager
async def running_budget(
    config: Config, clock: Clock | None = None, *, quiet_s: float | None = None, **limits: Any
) -> AsyncIterator[BudgetService]:
    """The budget service with first-start ``limits`` (timer and profiler periods
    long, so only what a test does changes anything) and ``clock``; ``quiet_s``:
    its follower's quiet spell (``Follower.quiet_s``)."""
    config.budget.limits = b.BudgetLimits(**{"evaluation_interval": 3600, **limits})
    config.budget.snapshot_interval_s = 0
    config.budget.profile_flush_s = 3600
    bus = await Bus.connect(config.nats.url or "", source="budget", clock=clock)
    service = BudgetService(bus, config)
    if quiet_s is not None:
        service.follower.quiet_s = quiet_s
    try:
        await service.start()
        assert await service.follower.wait_ready(15), "the budget did not get ready"
        yield service
    finally:
        await service.stop()
        await bus.close()


async def budgets_on(bus: Bus, on: bool = True, *, budget: BudgetService | None = None) -> None:
    """Set the budgets flag; returns once ``budget`` (running) folded it, or,
    without one, once the store holds it."""
    event = bus.event(FlagsChanged(flags={ENABLE_PERF: on}), key="flags")
    if budget is not None:
        assert await budget.follower.publish_and_wait([event], 10), "the flag was not folded"
        return
    async with watch_stored(bus) as stored:
        await bus.publish(event)
        await stored.first("flags.changed", where=lambda e: e.id == event.id)


async def fold_sample(bus: Bus, budget: BudgetService, *, vram_used: int, ts: float) -> None:
    """Publish :func:`sample` (built on ``bus``) and return once ``budget`` folded it."""
    event = bus.event(sample(bus, vram_used=vram_used, ts=ts), key="node")
    assert await budget.follower.publish_and_wait([event], 10), "the sample was not folded"


def sample(bus: Bus, *, vram_used: int, ts: float, cpu: float = 5.0) -> TelemetrySample:
    """A recorded reading: one 24 GB GPU with ``vram_used`` MiB in use."""
    gpu = GpuDevice(index=0, name="NVIDIA GeForce RTX 4090", memory_total_mib=24564,
                    memory_used_mib=vram_used, memory_free_mib=24564 - vram_used)  # fmt: skip
    host = HostStats(cpu_percent=cpu, cpu_count=16, ram_total_mib=65536, ram_available_mib=60000)
    return TelemetrySample(sample_id=bus.ids.new(), ts=ts, gpus=(gpu,), host=host,
                           source="recorded")  # fmt: skip


class Client:
    """The budget's endpoints over NATS; ``call`` returns the typed reply."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def call(self, subject: str, body: Any, reply: type[Any]) -> Any:
        return await self.bus.call(subject, body, reply, timeout=10)

    async def register(self, job_id: str, **perf: Any) -> b.JobAnswer:
        body = {"job_id": job_id, "perf": perf}
        answer: b.JobAnswer = await self.call(b.REGISTER, body, b.JobAnswer)
        return answer

    async def start(self, job_id: str) -> b.JobAnswer:
        answer: b.JobAnswer = await self.call(b.START, {"job_id": job_id}, b.JobAnswer)
        return answer

    async def finish(self, job_id: str, status: str = "complete") -> b.JobAnswer:
        body = {"job_id": job_id, "status": status}
        answer: b.JobAnswer = await self.call(b.FINISH, body, b.JobAnswer)
        return answer

    async def snapshot(self) -> b.BudgetSnapshot:
        snap: b.BudgetSnapshot = await self.call(b.SNAPSHOT, {}, b.BudgetSnapshot)
        return snap


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
