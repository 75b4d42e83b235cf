"""A scheduler that stops while a job ends leaves the job to its lease, quietly.

Stopping cancels the service's tasks (the event writer among them) before it
cancels the job drivers; a job that ends in between finds the writer stopped.
That is the stop, not a fault: it is logged at info and no failure is recorded
(another instance takes the job over when its lease expires).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from tests.advisor.service_support import running_advisor

from .support import Client, running_scheduler


class Gated(Executor):
    name = "synthetic"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def run(self, run: Run, progress: Progress) -> Outcome:
        self.started.set()
        await self.gate.wait()
        return Outcome(status="succeeded", dry_run=True)


async def test_a_job_ending_during_stop_is_left_to_its_lease_without_an_error(
    config: Config, store: Any, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    gated = Gated()
    async with running_advisor(config):
        async with running_scheduler(config, gated) as scheduler:
            await Client(bus).submit(payload={})
            await asyncio.wait_for(gated.started.wait(), 10)
            teardown = scheduler.teardown

            async def end_the_job_then_teardown() -> None:  # the writer is stopped by now
                gated.gate.set()
                drivers = [j.task for j in scheduler.jobs.values() if j.task is not None]
                await asyncio.wait(drivers, timeout=5)
                await teardown()

            scheduler.teardown = end_the_job_then_teardown  # type: ignore[method-assign]
            caplog.set_level(logging.INFO, logger="gpuroute")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("left to its lease" in r.getMessage() for r in caplog.records)
