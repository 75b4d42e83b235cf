"""The budget's writer does not wait for one burst's acks before it decides
and sends the next; requests are answered only once their burst is acked,
and the events reach the stream in the order they were decided."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from schemas import Event, decode_event
from schemas import budget as b
from schemas.subjects import STORE_READ
from schemas.system import StoredPage
from services.budget.service import BudgetService
from services.runtime.bus import Bus, Sent
from tests.budget.support import Client, budgets_on
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("store")


class _Held:
    """A sent burst whose ack wait starts only once ``gate`` is open."""

    def __init__(self, sent: Sent, gate: asyncio.Event) -> None:
        self.sent, self.gate = sent, gate

    async def acked(self) -> int:
        await self.gate.wait()
        return await self.sent.acked()


class GatedBus(Bus):
    """A real bus that records each burst it sends and holds back its acks
    while ``gate`` is closed."""

    gate: asyncio.Event
    sends: list[list[str]]

    async def send_many(self, events: Iterable[Event]) -> Sent:
        events = list(events)
        sent = await super().send_many(events)
        self.sends.append([e.type for e in events])
        return _Held(sent, self.gate)  # type: ignore[return-value]


async def test_the_next_burst_is_sent_before_the_previous_one_is_acknowledged(bus, config):
    await budgets_on(bus)
    config.budget.limits = b.BudgetLimits(evaluation_interval=3600, max_vram_mb=100_000)
    config.budget.snapshot_interval_s = 0
    config.budget.profile_flush_s = 3600
    gated = await GatedBus.connect(config.nats.url or "", source="budget")
    gated.gate, gated.sends = asyncio.Event(), []
    gated.gate.set()
    service = BudgetService(gated, config)
    try:
        await service.start()
        assert await service.follower.wait_ready(15)
        api = Client(bus)
        await wait_for(lambda: service.state.enforce())
        before = len(gated.sends)
        gated.gate.clear()
        first = asyncio.create_task(api.register("first", vram_mb=10))
        await wait_for(lambda: len(gated.sends) == before + 1)
        second = asyncio.create_task(api.register("second", vram_mb=10))
        # before the fix the writer sat in publish_many until the first burst's acks came
        await wait_for(lambda: len(gated.sends) == before + 2)
        await asyncio.sleep(0)
        assert not first.done() and not second.done(), "answered before its ack"
        gated.gate.set()
        answers = await asyncio.gather(first, second)
        assert [a.queue_state for a in answers] == ["queued", "queued"]
        assert answers[1].n == answers[0].n + 1
        stored = await wait_for(lambda: _stored_changes(bus, answers[1].n))
        assert stored[-2:] == [("first", answers[0].n), ("second", answers[1].n)]
    finally:
        await service.stop()
        await gated.close()


async def _stored_changes(bus: Bus, n: int) -> list[tuple[str, int]] | None:
    """(key, n) of the budget.state events the store holds, in stream order,
    once it holds change ``n``."""
    request = {"type": "budget.state", "limit": 1000}
    page = await bus.call(STORE_READ, request, StoredPage, timeout=5)
    events = [decode_event(bytes(s.event)) for s in page.events]
    changes = [(e.key, e.payload.payload.n) for e in events]
    return changes if changes and changes[-1][1] >= n else None
