"""Two scheduler instances against one NATS share the work and never run a job twice."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import pytest
from nats.aio.msg import Msg

from schemas import decode_event
from schemas import scheduler as s
from schemas.jobs import JobStarted
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.endpoints import EndpointError
from services.runtime.ids import derived_id
from services.scheduler.executors.synthetic import SyntheticExecutor
from tests.advisor.service_support import running_advisor

from .support import Client, running_scheduler

JOBS = 500


async def test_two_instances_start_each_of_500_jobs_exactly_once(
    config: Config, store: Any, bus: Bus
) -> None:
    started: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    succeeded: set[str] = set()
    all_succeeded = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        event = decode_event(msg.data)
        if isinstance(event.payload, JobStarted):
            started[event.key] += 1
            owners[event.payload.owner or "?"] += 1
        else:
            succeeded.add(event.key)
            if len(succeeded) >= JOBS:  # only this test's jobs run
                all_succeeded.set()

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
        await asyncio.wait_for(all_succeeded.wait(), 30)
        assert succeeded >= set(ids)
        await bus.nc.flush()
        assert len(set(ids)) == JOBS
        assert {k: n for k, n in started.items() if n != 1} == {}, "a job started twice"
        assert set(started) == set(ids)
        assert set(owners) == {a.instance, b.instance}, owners  # both did work
    for sub in subs:
        await sub.unsubscribe()


async def test_the_other_instance_answers_a_just_accepted_job_not_404(
    config: Config, store: Any, bus: Bus
) -> None:
    """The gateway's GET after its POST may reach the instance that did not accept
    the job, before that one has folded its events: it waits for them (the id is
    minted seconds ago), while an old unknown id is a 404 at once."""
    synthetic = SyntheticExecutor(config.scheduler.synthetic)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running_advisor(config))
        a = await stack.enter_async_context(running_scheduler(config, synthetic))
        b = await stack.enter_async_context(running_scheduler(config, synthetic))
        for _ in range(5):
            accepted = await a.submit(
                s.JobRequest(kind="other", executor="synthetic", payload={"duration_s": 0})
            )
            view = await b.get_job(s.JobRef(id=accepted.job_id))  # at once: not folded yet
            assert view.job_id == accepted.job_id
        old = derived_id("00000000-0000-7000-8000-000000000000", "never submitted")
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(EndpointError) as e:
            await b.get_job(s.JobRef(id=old))
        assert e.value.code == 404 and loop.time() - began < 1.0
