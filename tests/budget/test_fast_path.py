"""The budget's commands skip the per-request task (``endpoint(..., take=...)``)
and its follower skips decoding the budget's own events coming back from the
store (``Follower.applied_here``); answers, errors and the folded state are
what they were."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.micro import add_service

from schemas import budget as b
from services.runtime.bus import Bus
from services.runtime.endpoints import EndpointError, Pending, endpoint
from services.runtime.errors import ServiceCallError
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


async def test_commands_run_without_a_task_and_own_events_are_not_decoded(
    bus: Bus, config: Any, stored: EventWatch
) -> None:
    await budgets_on(bus)
    async with running_budget(config, max_running_jobs=64, max_vram_mb=100_000) as service:
        spawned: list[str] = []
        spawn = service.spawn

        def counting(coro: Any, name: str) -> Any:
            spawned.append(name)
            return spawn(coro, name)

        service.spawn = counting  # type: ignore[method-assign]
        api = Client(bus)
        assert service.state.enforce()  # stored before the start: folded while loading
        local_before = service.follower.stats.local
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

        # all 60 changes came back from the store and only moved the position
        last = service.state.n
        await stored.folded(service.follower, "budget.state",
                            where=lambda e: e.payload.payload.n == last)  # fmt: skip
        assert not service.follower._here  # every applied id seen back
        assert service.follower.stats.local - local_before >= 60
        assert service.follower.skipped == 0
        assert service.state.n == last, "an own event was folded twice"
        snap = await api.snapshot()
        assert snap.queued == snap.running == [] and snap.n == last
