"""A service's own hot paths, timed while the profiler flag is on and reported
to the budget's profiler.

:class:`HotPaths` times code at about a microsecond a call (two
``perf_counter`` reads and a dict update) while :attr:`HotPaths.on`; off, a
``span`` is one attribute test. :meth:`HotPaths.record` takes a duration
measured elsewhere (a follower's rebuild) whatever the flag says: what was
gathered while the flag was off is dropped at the next report.

:class:`Reporter` runs two supervised loops in a service: one follows
``flags.changed`` from the store and turns :attr:`HotPaths.on` with
``features.enable_perf`` (or the legacy ``features.enable_perf_profiler_dashboard``);
the other sends what was gathered every ``period_s`` as one ``profiler.span``
aggregate per name to the budget's span endpoint. A budget that does not
answer loses those aggregates (logged at DEBUG); the service never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from logging import Logger

from schemas.budget import SPAN, ProfilerSpan, Recorded
from schemas.flags import ENABLE_PERF, ENABLE_PERF_PROFILER_DASHBOARD, FlagsChanged, apply_flags
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError
from services.runtime.follow import follow_events

REPORT_EVERY_S = 5.0


def perf_on(flags: Mapping[str, bool]) -> bool:
    """The profiler flag: the umbrella or the legacy dashboard flag."""
    return flags.get(ENABLE_PERF, False) or flags.get(ENABLE_PERF_PROFILER_DASHBOARD, False)


class HotPaths:
    """Per-name call counts and wall time of a service's own code."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.on = False
        self._calls: dict[str, list[float]] = {}  # name -> [count, total_s, max_s]

    def record(self, name: str, seconds: float) -> None:
        entry = self._calls.get(name)
        if entry is None:
            self._calls[name] = [1, seconds, seconds]
            return
        entry[0] += 1
        entry[1] += seconds
        if seconds > entry[2]:
            entry[2] = seconds

    def span(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time the block under ``name`` while :attr:`on` (wall time, awaits
        included); off, a shared no-op context (a fraction of a microsecond)."""
        return _Timer(self, name) if self.on else _OFF

    def drain(self) -> list[ProfilerSpan]:
        """What was gathered since the last drain, one aggregate per name."""
        calls, self._calls = self._calls, {}
        return [
            ProfilerSpan(name=name, category=self.category, count=int(c), wall_ms=total * 1000,
                         max_ms=longest * 1000)
            for name, (c, total, longest) in sorted(calls.items())
        ]  # fmt: skip


class _Timer:
    __slots__ = ("_hot", "_name", "_t0")

    def __init__(self, hot: HotPaths, name: str) -> None:
        self._hot, self._name = hot, name

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self._hot.record(self._name, time.perf_counter() - self._t0)


_OFF: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


class Reporter:
    """Turns ``hot`` on and off with the flag and reports it to the budget.
    Run :meth:`follow_flags` and :meth:`report` under ``Service.supervise``."""

    def __init__(
        self, bus: Bus, hot: HotPaths, log: Logger, period_s: float = REPORT_EVERY_S
    ) -> None:
        self.bus, self.hot, self.log, self.period_s = bus, hot, log, period_s
        self.flags: dict[str, bool] = {}

    async def follow_flags(self) -> None:
        """Every ``flags.changed`` from the start of the log, then live."""
        self.flags = {}
        async for item in follow_events(self.bus, ["flags.changed"], 0):
            data = item.event.payload if item.event is not None else None
            if isinstance(data, FlagsChanged):
                self.flags = apply_flags(self.flags, data)
                self.hot.on = perf_on(self.flags)

    async def report(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            await self.send()

    async def send(self) -> int:
        """Send what was gathered (dropped while the flag is off); how many were recorded."""
        spans = self.hot.drain()
        if not self.hot.on:
            return 0
        sent = 0
        for span in spans:
            try:
                await self.bus.call(SPAN, span, Recorded, timeout=2)
            except ServiceCallError as e:
                self.log.debug("hot paths not reported", extra={"fields": {"error": str(e)}})
                break
            sent += 1
        return sent
