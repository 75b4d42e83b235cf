"""Where an attempt goes when the local slot is busy (issue 14, Routing): a one-off
job goes serverless when ``prefer_serverless`` (the remote executor at the adapters'
dry-run RunPod serverless provider), a batch waits for local or a pod, and a
serverless failure falls back to a pod. Each decision is in the attempt's
``job.started`` (target, provider, reason) or a ``job.rerouted``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from schemas import Event
from schemas.cloud import SpawnRequest
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from services.adapters.service import AdaptersService
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.cloud import capped
from services.scheduler.executors import build_executors
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import read_stored, running_cloud
from tests.scheduler.support import Client, running_scheduler
from tests.support import EventWatch, poll

HOLD = {"duration_s": 0.01, "steps": 1, "hold": True}
QUICK = {"duration_s": 0.01, "steps": 1}


class Held(Executor):
    """The synthetic executor; a payload with ``hold`` waits for ``gate`` first, so
    the one local slot stays busy as long as the test needs."""

    name = "synthetic"

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.gate = asyncio.Event()

    async def run(self, run: Run, progress: Progress) -> Outcome:
        payload = dict(run.payload)
        if payload.pop("hold", False):
            await self.gate.wait()
        return await self.inner.run(dataclasses.replace(run, payload=payload), progress)


def executors(config: Config, bus: Bus) -> tuple[dict[str, Executor], Held]:
    """The real synthetic (held) and remote (behind the cloud reservation) executors."""
    real = build_executors(config.scheduler, config.data_path, bus)
    held = Held(real["synthetic"])
    return capped({"synthetic": held, "remote": real["remote"]}, bus), held


@contextlib.asynccontextmanager
async def running_adapters(config: Config) -> AsyncIterator[AdaptersService]:
    bus = await Bus.connect(config.nats.url or "", source="adapters")
    service = AdaptersService(bus, config)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await bus.close()


async def job_events(stored: EventWatch, job_id: str, until: str) -> list[Event]:
    """The job's stored events, once one of type ``until`` is among them."""
    await stored.first(until, where=lambda e: e.key == job_id, timeout=15)
    return stored.matching("job.>", where=lambda e: e.key == job_id)


def started(events: list[Event]) -> list[Any]:
    return [e.payload for e in events if e.type == "job.started"]


async def test_one_off_goes_serverless_a_batch_waits_for_local(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    runpod = msgspec.structs.replace(config.adapters.runpod, dry_run=True)
    config.adapters = msgspec.structs.replace(config.adapters, runpod=runpod)
    await bus.emit(FlagsChanged(flags={ENABLE_COMPUTE: True}), key="flags")
    run_with, held = executors(config, bus)
    config.cloud = msgspec.structs.replace(config.cloud, autoscale_threshold=0)  # both read it
    async with (
        running_adapters(config), running_advisor(config),
        running_cloud(config, prefer_serverless=True) as cloud,
        running_scheduler(config, executors=run_with, max_running=1) as sched,
    ):  # fmt: skip
        await stored.folded(sched.cloud.follower, "flags.changed", timeout=5)
        assert sched.cloud.follower.state.compute
        client = Client(bus)
        long = await client.submit(payload=HOLD)
        await job_events(stored, long.job_id, "job.started")
        one = await client.submit(payload=QUICK)
        one_events = await job_events(stored, one.job_id, "job.succeeded")
        batch = await client.submit(payload=QUICK, batch=4)
        # the batch: no serverless; the scheduler's own count of waiting attempts, no event
        await poll(lambda: sched.cloud.waiting == 1, timeout=5)
        held.gate.set()
        batch_events = await job_events(stored, batch.job_id, "job.succeeded")
        mine = lambda e: e.key == batch.job_id  # noqa: E731
        await stored.folded(cloud.follower, "job.succeeded", where=mine, timeout=5)
        assert cloud.state.jobs_processed == 1

    [attempt] = started(one_events)
    assert (attempt.target, attempt.provider) == ("serverless", "runpod")
    assert "prefer_serverless" in attempt.reason and "autoscale_threshold 0" in attempt.reason
    done = one_events[-1].payload
    assert done.dry_run is True and done.provider == "runpod"
    [attempt] = started(batch_events)
    assert attempt.target not in ("serverless", "cloud_pod") and attempt.reason is None
    money = await read_stored(bus, ["cloud.cost.>"])
    assert [e.payload.job_id for e in money if e.type == "cloud.cost.reserved"] == [one.job_id]


async def test_a_serverless_failure_falls_back_to_a_pod(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    await bus.emit(FlagsChanged(flags={ENABLE_COMPUTE: True}), key="flags")
    run_with, held = executors(config, bus)
    config.cloud = msgspec.structs.replace(config.cloud, autoscale_threshold=0)  # both read it
    pods = msgspec.structs.replace(config.cloud.pods, dry_run=True, dry_boot_s=0.0)
    async with (  # no adapters service: the serverless submit finds no one
        running_advisor(config),
        running_cloud(config, max_pods=1, pods=pods) as cloud,
        running_scheduler(config, executors=run_with, max_running=1) as sched,
    ):  # fmt: skip
        await stored.folded(sched.cloud.follower, "flags.changed", timeout=5)
        assert sched.cloud.follower.state.compute
        client = Client(bus)
        long = await client.submit(payload=HOLD)
        await job_events(stored, long.job_id, "job.started")
        one = await client.submit(payload=QUICK)
        await job_events(stored, one.job_id, "job.rerouted")
        await cloud.spawn_pod(SpawnRequest())
        await cloud.check()  # dry-run pod RUNNING at once: ready
        events = await job_events(stored, one.job_id, "job.succeeded")
        held.gate.set()

    first, second = started(events)
    assert first.target == "serverless" and first.attempt == 1
    assert second.target == "cloud_pod" and second.attempt == 2
    assert second.provider in cloud.state.pods and "claimed" in second.reason
    [moved] = [e.payload for e in events if e.type == "job.rerouted"]
    assert (moved.from_target, moved.to_target) == ("serverless", "cloud_pod")
    assert "serverless failed" in moved.reason
    assert events[-1].payload.attempt == 2  # max_attempts 1: the fallback spent none
