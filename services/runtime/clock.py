"""Injected time. Services read time only through a :class:`Clock`, so tests
and replays can supply their own; projections (folds) never read it at all."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; only differences mean anything."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start
        self._origin = start

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t - self._origin

    def advance(self, seconds: float) -> None:
        self._t += seconds
