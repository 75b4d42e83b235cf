"""A replay of the log re-decides every change byte for byte; a restart
rebuilds the same state; the profiler dashboard, its flag and reset."""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import sqlite3
import time

import msgspec
import pytest

from schemas import Event, decode_event
from schemas import budget as b
from services.budget.client import BudgetClient
from services.budget.fold import BudgetProjection, replay
from services.runtime.clock import ManualClock
from services.runtime.errors import ServiceCallError
from services.runtime.projection import canonical
from tests.budget.support import Client, budgets_on, fold_sample, running_budget
from tests.support import EventWatch

pytestmark = pytest.mark.usefixtures("store")


def logged(db) -> list:  # type: ignore[no-untyped-def]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT body FROM events ORDER BY seq").fetchall()
    return [decode_event(body) for (body,) in rows]


def change_n(event: Event) -> int:
    """The change number a budget event carries (0: none)."""
    data = event.payload
    return data.payload.n if isinstance(data, b.BudgetState) else getattr(data, "n", 0)


async def test_a_replay_of_the_log_reproduces_every_queue_state_and_reason(
    bus, config, stored: EventWatch
):
    await budgets_on(bus)
    clock = ManualClock(time.time())
    projection = BudgetProjection(node=config.telemetry.node_id())
    async with running_budget(config, clock, max_vram_mb=8192, max_running_jobs=3,
                              starvation_age_s=20, lazy_asset_target_mb=500) as budget:  # fmt: skip
        api, client = Client(bus), BudgetClient(bus, owner="painter")
        await client.register("ckpt", 2000)
        for i in range(6):
            await api.register(f"j{i}", vram_mb=1500 + 500 * i, ram_mb=100 * i)
            clock.advance(7)
        await api.start("j0")
        await fold_sample(bus, budget, vram_used=8000, ts=clock.now())
        await budget.evaluate("evaluation")
        await api.finish("j0")
        await bus.call(b.APPLY, {"max_vram_mb": 12000}, b.BudgetSnapshot)
        await asyncio.gather(*(api.register(f"c{i}", vram_mb=300) for i in range(20)))
        await api.finish("j1", "cancelled")
        await bus.call(b.REFRESH, {}, b.Transitions)
        live = canonical(projection.to_builtins(budget.state))
        n = budget.state.n
        await stored.first(">", where=lambda e: change_n(e) >= n)
    events = logged(config.events_db)
    changes = [e for e in events if e.type == "budget.state"]
    assert len(changes) > 25
    assert {c.payload.trigger for c in changes} >= {
        "limits.updated",
        "job.registered",
        "job.started",
        "job.finished",
        "evaluation",
    }
    state, problems = replay(events)
    assert problems == []
    state.node = projection.node
    assert canonical(projection.to_builtins(state)) == live
    # and a restarted service rebuilds the same state from the store
    async with running_budget(config, clock) as again:
        assert canonical(projection.to_builtins(again.state)) == live


async def test_a_tampered_decision_is_named_by_the_replay(bus, config):
    async with running_budget(config):
        await Client(bus).register("x", vram_mb=1)
    events = logged(config.events_db)
    i, change = next((i, e) for i, e in enumerate(events) if e.type == "budget.state"
                     and e.payload.trigger == "job.registered")  # fmt: skip
    answer = msgspec.structs.replace(change.payload.payload.answer, reason="forged")
    forged = msgspec.structs.replace(change.payload.payload, answer=answer)
    events[i] = msgspec.structs.replace(
        change, data=msgspec.structs.replace(change.payload, payload=forged)
    )
    _, problems = replay(events)
    assert len(problems) == 1 and "job.registered" in problems[0] and "forged" in problems[0]


async def test_the_dashboard_needs_its_flag_and_shows_time_memory_categories_marks(bus, config):
    async with running_budget(config) as budget:
        client = BudgetClient(bus, owner="painter")
        with pytest.raises(ServiceCallError) as e:
            await bus.call(b.DASHBOARD, {}, b.Dashboard)
        assert e.value.code == 409 and "features.enable_perf" in e.value.description
        await budgets_on(bus, budget=budget)
        await client.mark("scene loaded", category="render", metadata={"scene": "intro"})
        with client.profile("hydrate_scene", category="render"):
            # 8 MB more RSS: fresh anonymous pages, each written so it is resident (a
            # bytes object may come from memory the allocator kept from earlier tests)
            blob = mmap.mmap(-1, 8 << 20)
            for offset in range(0, 8 << 20, mmap.PAGESIZE):
                blob[offset] = 1
        blob.close()

        @client.profile("encode", category="io")
        async def encode() -> None:
            await asyncio.sleep(0.01)

        await encode()
        await client.flush()
        await bus.call(b.SPAN, {"name": "hydrate_scene", "category": "render",
                                "wall_ms": 500, "count": 4, "max_ms": 200}, b.Recorded)  # fmt: skip
        dash = await bus.call(b.DASHBOARD, {"limit": 5}, b.Dashboard)
        assert [s.name for s in dash.top_time] == ["hydrate_scene", "encode"]
        hydrate = dash.top_time[0]
        assert (hydrate.count, hydrate.max_ms) == (5, 200)
        assert dash.top_memory[0].name == "hydrate_scene"
        assert dash.top_memory[0].max_memory_kb >= 4096
        assert [c.category for c in dash.categories] == ["render", "io"]
        assert dash.recent[0].name == "scene loaded" and dash.marks == 1
        await bus.call(b.RESET, {}, b.Recorded)
        dash = await bus.call(b.DASHBOARD, {}, b.Dashboard)
        assert (dash.spans, dash.marks, dash.top_time) == (0, 0, [])
        health = await bus.call(b.HEALTH, {}, b.PerfHealth)
        assert health.budgets and health.dashboard
