"""The budget service over NATS: admission with reasons, release on finish,
starvation, reservations under concurrency, refusals."""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import budget as b
from services.runtime.clock import ManualClock
from services.runtime.errors import ServiceCallError
from tests.budget.support import Client, budgets_on, fold_sample, running_budget

pytestmark = pytest.mark.usefixtures("store")


async def test_a_vram_heavy_job_waits_while_another_runs_and_goes_the_moment_it_finishes(
    bus, config
):
    await budgets_on(bus)
    async with running_budget(config, max_vram_mb=8192) as budget:
        api = Client(bus)
        first = await api.register("render-1", vram_mb=6144, ram_mb=1024, cpu_percent=10)
        assert (first.queue_state, first.code) == ("queued", "fits")
        assert (await api.start("render-1")).queue_state == "running"
        heavy = await api.register("render-1024", vram_mb=4096)
        assert (heavy.queue_state, heavy.code) == ("delayed", "vram")
        assert heavy.reason == (
            "vram: 4096 MB requested, 2048 MB free under max_vram_mb 8192 "
            "(1 job running hold 6144 MB)"
        )
        done = await api.finish("render-1")
        assert (done.queue_state, done.code) == ("finished", "complete")
        [released] = done.transitions
        assert (released.job_id, released.previous, released.state) == (
            "render-1024",
            "delayed",
            "queued",
        )
        assert budget.state.book.jobs["render-1024"].state == "queued"
        snap = await api.snapshot()
        assert (snap.queued, snap.running, snap.delayed) == (["render-1024"], [], [])


async def test_telemetry_counts_and_a_finished_job_is_credited_before_the_next_sample(
    bus, config, store
):
    await budgets_on(bus)
    async with running_budget(config, max_vram_mb=8192) as budget:
        api = Client(bus)
        await api.register("a", vram_mb=4000)
        await api.start("a")
        now = budget.clock.now()
        await fold_sample(bus, budget, vram_used=5000, ts=now)  # a + 1000 other use
        b_ = await api.register("b", vram_mb=3500)
        assert (b_.queue_state, b_.code) == ("delayed", "vram")
        assert "3192 MB free" in b_.reason and "shows 5000 MB in use" in b_.reason
        done = await api.finish("a")
        assert [t.job_id for t in done.transitions] == ["b"]  # 5000 - 4000 credited


async def test_a_small_job_passes_a_big_one_until_the_big_one_is_older_than_the_age(bus, config):
    await budgets_on(bus)
    clock = ManualClock(time.time())
    async with running_budget(config, clock, max_vram_mb=8000, starvation_age_s=30,
                              max_running_jobs=8):  # fmt: skip
        api = Client(bus)
        await api.register("holder", vram_mb=6000)
        big = await api.register("big", vram_mb=4000)
        assert big.code == "vram"
        small = await api.register("small-1", vram_mb=1000)
        assert small.queue_state == "queued"  # passes the big one that does not fit
        clock.advance(31)
        late = await api.register("small-2", vram_mb=500)
        assert (late.queue_state, late.code) == ("delayed", "behind")
        assert late.reason.startswith("behind: job big has waited 31.")
        assert "over starvation_age_s 30" in late.reason
        done = await api.finish("holder")
        assert [(t.job_id, t.state) for t in done.transitions] == [
            ("big", "queued"),
            ("small-2", "queued"),
        ]


async def test_100_concurrent_registrations_never_admit_past_the_limits(bus, config):
    await budgets_on(bus)
    async with running_budget(config, max_vram_mb=3 * 2048, max_running_jobs=2) as budget:
        api = Client(bus)
        answers = await asyncio.gather(
            *(api.register(f"job-{i}", vram_mb=2048) for i in range(100))
        )
        admitted = [a.job_id for a in answers if a.queue_state == "queued"]
        assert len(admitted) == 2
        assert {a.code for a in answers if a.queue_state == "delayed"} == {"running_jobs"}
        # start/finish concurrently: never more than 2 admitted, never over the VRAM
        seen_over: list[int] = []

        def check() -> None:
            jobs = budget.state.book.jobs.values()
            held = [j for j in jobs if j.state != "delayed"]
            if len(held) > 2 or sum(j.perf.vram_mb for j in held) > 3 * 2048:
                seen_over.append(len(held))

        done = 0
        while done < 100:
            current = [j.job_id for j in budget.state.book.jobs.values() if j.state == "queued"]
            await asyncio.gather(*(api.start(j) for j in current))
            check()
            answers = await asyncio.gather(*(api.finish(j) for j in current))
            check()
            done += len(answers)
        assert not seen_over and not budget.state.book.jobs


async def test_infeasible_is_refused_with_the_reason_and_unknown_ids_are_404(bus, config):
    await budgets_on(bus)
    async with running_budget(config, max_vram_mb=8192):
        api = Client(bus)
        answer = await api.register("huge", vram_mb=10240)
        assert (answer.queue_state, answer.code) == ("rejected", "infeasible")
        assert "10240 MB VRAM requested, above max_vram_mb 8192 itself" in answer.reason
        with pytest.raises(ServiceCallError) as e:
            await api.start("nope")
        assert e.value.code == 404 and "'nope'" in e.value.description
        with pytest.raises(ServiceCallError) as e:
            await api.finish("huge")
        assert e.value.code == 404
        await api.register("w", vram_mb=4096)
        await api.register("x", vram_mb=8000)
        with pytest.raises(ServiceCallError) as e:
            await api.start("x")
        assert e.value.code == 409 and "is delayed: vram:" in e.value.description


async def test_budgets_off_queues_everything_and_says_so(bus, config):
    async with running_budget(config, max_vram_mb=1024):
        answer = await Client(bus).register("any", vram_mb=100_000)
    assert (answer.queue_state, answer.code) == ("queued", "budgets_off")
    assert "budgets are off" in answer.reason


async def test_bad_input_is_a_400_naming_the_field(bus, config):
    async with running_budget(config):
        api = Client(bus)
        for body, where in [
            ({"job_id": "j", "perf": {"vram": 1}}, "$.perf"),
            ({"job_id": "j", "payload": {"perf": {"vram_mb": -1}}}, "$.payload.perf.vram_mb"),
            ({"job_id": "j", "payload": {"perf": {"vram_mb": "a"}}}, "$.payload.perf.vram_mb"),
            ({"job_id": ""}, "$.job_id"),
        ]:
            with pytest.raises(ServiceCallError) as e:
                await api.call(b.REGISTER, body, b.JobAnswer)
            assert e.value.code == 400 and where in e.value.description, e.value.description
        with pytest.raises(ServiceCallError) as e:
            await api.call(b.APPLY, {"max_vram_mb": -5}, b.BudgetSnapshot)
        assert e.value.code == 400 and "$.max_vram_mb" in e.value.description
        with pytest.raises(ServiceCallError) as e:
            await api.call(b.APPLY, {"max_running_jobs": 10**9}, b.BudgetSnapshot)
        assert e.value.code == 400 and "$.max_running_jobs" in e.value.description
        snap = await api.snapshot()
        assert snap.limits.max_vram_mb == 8192  # nothing changed
        answer = await api.call(b.REGISTER, {"job_id": "p", "job_type": "render",
                                              "payload": {"scene": "intro", "perf": {
                                                  "cpu_percent": 12, "ram_mb": 1536,
                                                  "vram_mb": 2048}}}, b.JobAnswer)  # fmt: skip
        assert answer.queue_state == "queued"
        assert (await api.snapshot()).jobs[0].perf.vram_mb == 2048
