"""The budget's commands skip the per-request task (``endpoint(..., take=...)``)
and its follower does not take the budget's own events back from the store
(``Follower.own``); answers, errors and the folded state are what they were,
and a restart from the snapshot it saves skips the changes it already holds."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.micro import add_service

from schemas import budget as b
from services.budget import fold
from services.budget.fold import BudgetProjection
from services.runtime.bus import Bus
from services.runtime.endpoints import EndpointError, Pending, endpoint
from services.runtime.errors import ServiceCallError
from services.runtime.follower import Follower
from tests.budget.support import Client, budgets_on, running_budget
from tests.support import EventWatch

pytestmark = pytest.mark.usefixtures("store")


class Echo(msgspec.Struct):
    text: str = ""


async def test_a_taken_request_is_answered_later_and_the_rest_as_usual(bus: Bus) -> None:
    taken: list[tuple[Echo, Pending]] = []
    both_taken = asyncio.Event()
    served: list[str] = []

    def take(request: Echo, pending: Pending) -> bool:
        if request.text == "bad":
            raise EndpointError(422, "bad is refused at once")
        if request.text.startswith("later"):
            taken.append((request, pending))
            if len(taken) == 2:
                both_taken.set()
            return True
        return False

    async def handler(request: Echo) -> Echo:
        served.append(request.text)
        return Echo(text="served " + request.text)

    service = await add_service(bus.nc, name="fastpath", version="0.0.1")
    await service.add_endpoint(name="e", subject="test.fastpath",
                               handler=endpoint(Echo, handler, take=take))  # fmt: skip

    async def call(text: Any) -> Echo:
        reply: Echo = await bus.call("test.fastpath", {"text": text}, Echo, timeout=5)
        return reply

    assert (await call("now")).text == "served now"
    with pytest.raises(ServiceCallError) as e:
        await call("bad")
    assert (e.value.code, e.value.description) == (422, "bad is refused at once")
    with pytest.raises(ServiceCallError) as e:
        await call(5)  # not decoded: take never sees it
    assert e.value.code == 400 and "$.text" in e.value.description
    first = asyncio.create_task(call("later-1"))
    second = asyncio.create_task(call("later-2"))
    await asyncio.wait_for(both_taken.wait(), 5)
    assert served == ["now"] and not first.done()
    await taken[1][1].fail(EndpointError(409, "second refused"))
    await taken[0][1].reply(Echo(text="answered " + taken[0][0].text))
    assert (await first).text == "answered later-1"
    with pytest.raises(ServiceCallError) as e:
        await second
    assert (e.value.code, e.value.description) == (409, "second refused")
    await service.stop()


async def test_commands_run_without_a_task_and_own_events_are_not_read_back(
    bus: Bus, config: Any, stored: EventWatch
) -> None:
    await budgets_on(bus)
    async with running_budget(config, quiet_s=0.2, max_running_jobs=64,
                              max_vram_mb=100_000) as service:  # fmt: skip
        spawned: list[str] = []
        spawn = service.spawn

        def counting(coro: Any, name: str) -> Any:
            spawned.append(name)
            return spawn(coro, name)

        service.spawn = counting  # type: ignore[method-assign]
        api = Client(bus)
        assert service.state.enforce()  # stored before the start: folded while loading
        assert service.follower.live_patterns == ["flags.changed", "telemetry.sampled"]
        received_before = service.follower.stats.received
        n_before = service.state.n
        ids = [f"job-{i}" for i in range(20)]
        answers = await asyncio.gather(*(api.register(j, vram_mb=10) for j in ids))
        assert {a.queue_state for a in answers} == {"queued"}
        assert sorted(a.n for a in answers) == list(range(n_before + 1, n_before + 21))
        for j in ids:
            assert (await api.start(j)).queue_state == "running"
            assert (await api.finish(j)).queue_state == "finished"
        with pytest.raises(ServiceCallError) as e:
            await api.finish("nobody")  # refused on the writer, answered through Pending
        assert e.value.code == 404 and "nobody" in e.value.description
        with pytest.raises(ServiceCallError) as e:  # refused in take itself
            await api.call(b.REGISTER, {"job_id": "x", "payload": {"perf": {"vram": 1}}},
                           b.JobAnswer)  # fmt: skip
        assert e.value.code == 400 and "$.payload.perf" in e.value.description
        assert "request" not in spawned, "a command ran in a task of its own"
        assert service._taken == 0

        # none of the 60 changes came back live; a quiet spell moved the position past them
        last = service.state.n
        seq = await stored_at(stored, last)
        assert await service.follower.wait_position(seq, 10), service.follower.progress()
        assert service.follower.stats.received == received_before
        assert service.follower.stats.moved >= 1
        assert service.follower.skipped == 0
        assert service.state.n == last, "an own event was folded twice"
        await budgets_on(bus, budget=service)  # a followed event still arrives live
        assert service.follower.stats.received == received_before + 1
        with pytest.raises(ValueError, match="owned"):  # an own event never comes back
            await service.follower.publish_and_wait(
                [bus.event(b.ProfilerReset(n=last + 1), key="x")], 1)  # fmt: skip
        with pytest.raises(RuntimeError, match="before the state is loaded"):
            Follower(bus, BudgetProjection(), fold.FOLLOWED, log=service.log).own(fold.WRITTEN)
        snap = await api.snapshot()
        assert snap.queued == snap.running == [] and snap.n == last


async def stored_at(stored: EventWatch, n: int) -> int:
    """The store position of the budget's change ``n``, once stored."""
    seq: int = (await stored.until(
        lambda: next((q for q, e in stored.events
                      if e.type == "budget.state" and e.payload.payload.n == n), None),
        f"change {n}"))  # fmt: skip
    return seq


async def test_a_restart_skips_the_changes_its_snapshot_holds_past_its_position(
    bus: Bus, config: Any, stored: EventWatch
) -> None:
    await budgets_on(bus)
    async with running_budget(config, quiet_s=0.2, max_vram_mb=100_000) as service:
        api = Client(bus)
        for i in range(5):
            await api.register(f"job-{i}", vram_mb=10)
        seq = await stored_at(stored, service.state.n)
        assert await service.follower.wait_position(seq, 10)  # a quiet spell moved it
        await api.register("job-5", vram_mb=10)  # in the state, past the position
        n, saved_at = service.state.n, service.follower.position
        assert saved_at == seq
    # stopping saved a snapshot at ``seq`` holding change ``n`` (> every change up to seq)
    await stored_at(stored, n)
    async with running_budget(config, quiet_s=0.2, max_vram_mb=100_000) as again:
        assert again.follower.restored_from == saved_at
        assert again.state.n == n and again.follower.skipped == 0
        assert sorted(again.state.book.jobs) == [f"job-{i}" for i in range(6)]
        assert (await Client(bus).register("job-6", vram_mb=10)).n == n + 1


async def test_after_stop_saving_no_snapshot_holds_what_the_log_may_lack(
    bus: Bus, config: Any, stored: EventWatch
) -> None:
    """What the writer does when a change cannot be recorded: the state is ahead
    of the log, so no snapshot may keep it; the next start reads the store."""
    await budgets_on(bus)
    async with running_budget(config, quiet_s=0.2, max_vram_mb=100_000) as service:
        api = Client(bus)
        await api.register("job-0", vram_mb=10)
        seq = await stored_at(stored, service.state.n)
        assert await service.follower.wait_position(seq, 10)
        service.follower.stop_saving("test")
        await api.register("job-1", vram_mb=10)
        n = service.state.n
    await stored_at(stored, n)
    async with running_budget(config, quiet_s=0.2, max_vram_mb=100_000) as again:
        restored = again.follower.restored_from
        assert restored is None or restored < seq, "a snapshot was saved after stop_saving"
        assert again.state.n == n and sorted(again.state.book.jobs) == ["job-0", "job-1"]
