"""The budget's writer does not wait for one burst's acks before it decides
and sends the next; requests are answered only once their burst is acked,
and the events reach the stream in the order they were decided."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from schemas import Event
from schemas import budget as b
from services.budget.service import BudgetService
from services.runtime.bus import Bus, Sent
from tests.budget.support import Client, budgets_on
from tests.support import EventWatch

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
    sent: asyncio.Event
    """Set on each burst sent."""

    async def send_many(self, events: Iterable[Event]) -> Sent:
        events = list(events)
        sent = await super().send_many(events)
        self.sends.append([e.type for e in events])
        self.sent.set()
        return _Held(sent, self.gate)  # type: ignore[return-value]

    async def bursts(self, n: int) -> None:
        """Until ``n`` bursts were sent."""
        while len(self.sends) < n:
            self.sent.clear()
            await asyncio.wait_for(self.sent.wait(), 10)


async def test_the_next_burst_is_sent_before_the_previous_one_is_acknowledged(
    bus, config, stored: EventWatch
):
    await budgets_on(bus)
    config.budget.limits = b.BudgetLimits(evaluation_interval=3600, max_vram_mb=100_000)
    config.budget.snapshot_interval_s = 0
    config.budget.profile_flush_s = 3600
    gated = await GatedBus.connect(config.nats.url or "", source="budget")
    gated.gate, gated.sends, gated.sent = asyncio.Event(), [], asyncio.Event()
    gated.gate.set()
    service = BudgetService(gated, config)
    try:
        await service.start()
        assert await service.follower.wait_ready(15)
        api = Client(bus)
        assert service.state.enforce()  # stored before the start: folded while loading
        before = len(gated.sends)
        gated.gate.clear()
        first = asyncio.create_task(api.register("first", vram_mb=10))
        await gated.bursts(before + 1)
        second = asyncio.create_task(api.register("second", vram_mb=10))
        # before the fix the writer sat in publish_many until the first burst's acks came
        await gated.bursts(before + 2)
        await asyncio.sleep(0)
        assert not first.done() and not second.done(), "answered before its ack"
        gated.gate.set()
        answers = await asyncio.gather(first, second)
        assert [a.queue_state for a in answers] == ["queued", "queued"]
        assert answers[1].n == answers[0].n + 1
        await stored.first("budget.state", where=lambda e: e.payload.payload.n == answers[1].n)
        changes = sorted((s, e.key, e.payload.payload.n) for s, e in stored.events
                         if e.type == "budget.state")  # fmt: skip
        assert [c[1:] for c in changes[-2:]] == [("first", answers[0].n), ("second", answers[1].n)]
    finally:
        await service.stop()
        await gated.close()
