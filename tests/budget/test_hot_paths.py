"""The services' own hot paths reach the profiler dashboard while the profiler
flag is on (the store's batch write, the follower's rebuild), and nothing is
reported while it is off."""

from __future__ import annotations

import asyncio
import logging

import pytest

from schemas import Event
from schemas import budget as b
from schemas.budget import ProfilerSpan
from schemas.flags import ENABLE_PERF, FlagsChanged
from services.runtime.bus import Bus
from services.runtime.profiling import HotPaths, Reporter
from services.store.service import StoreService
from tests.budget.support import running_budget
from tests.support import EventWatch, poll


async def _names(bus: Bus, category: str) -> set[str]:
    dash = await bus.call(b.DASHBOARD, {"limit": 50}, b.Dashboard)
    return {s.name for s in dash.top_time if s.category == category}


def _store_span(event: Event) -> bool:
    return isinstance(event.payload, ProfilerSpan) and event.payload.category == "service.store"


async def test_the_store_batch_write_and_the_budget_rebuild_are_on_the_dashboard(
    bus, config, stored: EventWatch
):
    config.budget.profile_flush_s = 0.1
    store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
    await store.start()
    try:
        await bus.emit(FlagsChanged(flags={ENABLE_PERF: True}), key="flags")
        async with running_budget(config) as budget:
            budget.settings.profile_flush_s = 0.1
            await stored.folded(budget.follower, "flags.changed")
            assert budget.hot.on
            # poll: the store's Reporter follows the flag in a loop of its own
            # that announces nothing
            await poll(lambda: store.hot.on)
            await bus.emit(FlagsChanged(flags={"features.other": True}), key="flags")
            # the store reports the write of that batch every 0.1 s; the budget
            # records it (folded before it is published) as a profiler.span
            await stored.first("profiler.span", where=_store_span)
            assert "store.batch_write" in await _names(bus, "service.store")
    finally:
        await store.stop()
        await store.bus.close()


@pytest.mark.usefixtures("store")
async def test_a_reporter_sends_nothing_while_the_flag_is_off(bus, config):
    hot = HotPaths("service.test")
    reporter = Reporter(bus, hot, logging.getLogger("test"), period_s=3600)
    hot.record("follower.rebuild", 0.5)  # recorded whatever the flag says
    with hot.span("timed"):
        pass
    assert await reporter.send() == 0  # off: dropped, and the budget is never asked
    task = asyncio.create_task(reporter.follow_flags())
    try:
        await bus.emit(FlagsChanged(flags={ENABLE_PERF: True}), key="flags")
        await poll(lambda: hot.on)  # poll: set inside follow_flags' loop, announced nowhere
        with hot.span("timed"):
            pass
        assert [s.name for s in hot.drain()] == ["timed"]
    finally:
        task.cancel()
