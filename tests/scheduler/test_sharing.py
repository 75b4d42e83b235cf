"""Two scheduler instances against one NATS share the work and never run a job twice."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from nats.aio.msg import Msg

from schemas import decode_event
from schemas.jobs import JobStarted
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.executors.synthetic import SyntheticExecutor
from tests.advisor.service_support import running_advisor
from tests.support import wait_for

from .support import Client, running_scheduler

JOBS = 500


async def test_two_instances_start_each_of_500_jobs_exactly_once(
    config: Config, store: Any, bus: Bus
) -> None:
    started: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    succeeded: set[str] = set()

    async def on_event(msg: Msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event.payload, JobStarted):
            started[event.key] += 1
            owners[event.payload.owner or "?"] += 1
        else:
            succeeded.add(event.key)

    subs = [await bus.nc.subscribe(s, cb=on_event) for s in ("job.started", "job.succeeded")]
    synthetic = SyntheticExecutor(config.scheduler.synthetic)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running_advisor(config))
        a = await stack.enter_async_context(running_scheduler(config, synthetic, max_running=64))
        b = await stack.enter_async_context(running_scheduler(config, synthetic, max_running=64))
        client = Client(bus)
        ids: list[str] = []
        for _ in range(JOBS // 50):
            answers = await asyncio.gather(*(client.submit(payload={"duration_s": 0})
                                             for _ in range(50)))  # fmt: skip
            ids += [x.job_id for x in answers]
        await wait_for(lambda: succeeded >= set(ids), timeout=30, interval=0.05)
        await bus.nc.flush()
        assert len(set(ids)) == JOBS
        assert {k: n for k, n in started.items() if n != 1} == {}, "a job started twice"
        assert set(started) == set(ids)
        assert set(owners) == {a.instance, b.instance}, owners  # both did work
    for sub in subs:
        await sub.unsubscribe()
