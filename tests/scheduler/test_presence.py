"""Presence: a budget that does not answer is asked once for many jobs, not once each."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.clock import ManualClock
from services.runtime.errors import ServiceCallError
from services.scheduler.presence import Presence


class Far:
    """The far side of the calls: answers, or raises ``code``, after one loop turn."""

    def __init__(self, code: int | None) -> None:
        self.code = code
        self.calls = 0

    async def ask(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        if self.code is not None:
            raise ServiceCallError("gpuroute.budget.jobs.register", self.code, "no service")
        return "ok"


async def many(presence: Presence, far: Far, n: int) -> list[object]:
    return await asyncio.gather(*(presence.call(far.ask) for _ in range(n)),
                                return_exceptions=True)  # fmt: skip


async def test_an_absent_service_is_asked_once_for_concurrent_calls_then_after_recheck() -> None:
    clock = ManualClock()
    presence, far = Presence(recheck_s=0.05, clock=clock), Far(503)
    answers = await many(presence, far, 50)
    assert far.calls == 1
    assert all(isinstance(a, ServiceCallError) and a.code == 503 for a in answers)
    await many(presence, far, 50)
    assert far.calls == 1  # remembered
    clock.advance(0.06)
    far.code = None  # the service started
    assert await many(presence, far, 50) == ["ok"] * 50
    assert far.calls == 2 + 49  # one probe, then every call asks


async def test_a_present_service_gets_every_call_and_other_errors_are_not_remembered() -> None:
    presence, far = Presence(recheck_s=10, clock=ManualClock()), Far(None)
    assert await many(presence, far, 20) == ["ok"] * 20
    assert far.calls == 20
    far.code = 504  # a timeout says nothing about presence
    await many(presence, far, 5)
    far.code = None
    assert await presence.call(far.ask) == "ok"
    assert far.calls == 26
    far.code = 503
    with pytest.raises(ServiceCallError):
        await presence.call(far.ask)
    far.code = None
    with pytest.raises(ServiceCallError):  # within recheck_s: not asked
        await presence.call(far.ask)
    assert far.calls == 27
