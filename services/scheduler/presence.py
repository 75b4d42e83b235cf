"""Whether an optional service answers, learnt from the calls made to it.

The scheduler registers every job with the budget service, which may not be
running (budgets are optional). NATS answers "no responders" at once, but
that is still one request per job, and under load the answer comes back
after hundreds of other jobs have sent theirs. :class:`Presence` wraps such
calls:

- after a 503 (no responder, or the service said it cannot answer yet) every
  call within ``recheck_s`` seconds raises that error again without asking;
- when it is not known whether the service answers (at first, and once
  ``recheck_s`` has passed) one call asks and the others wait for its answer:
  if it answered, they all ask; if not, they all get its error;
- once the service answered, calls go straight to it.

A service that starts meanwhile is therefore seen ``recheck_s`` seconds late at
most: jobs registered before go on without it, as they would have had they
been submitted a moment earlier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.runtime.clock import Clock, SystemClock
from services.runtime.errors import ServiceCallError

T = TypeVar("T")

ABSENT = 503


class Presence:
    def __init__(self, recheck_s: float, clock: Clock | None = None) -> None:
        self.recheck_s = recheck_s
        self._clock = clock or SystemClock()
        self.asked = 0
        """Calls that went to the service (a test reads it)."""
        self._absent: tuple[float, ServiceCallError] | None = None
        self._known = False
        self._probe: asyncio.Future[None] | None = None

    async def call(self, ask: Callable[[], Awaitable[T]]) -> T:
        """``await ask()``, or the remembered 503 without asking."""
        loop = asyncio.get_running_loop()
        while not self._known:
            if (
                self._absent is not None
                and self._clock.monotonic() - self._absent[0] < self.recheck_s
            ):
                e = self._absent[1]
                raise ServiceCallError(e.subject, e.code, e.description)
            if self._probe is None:
                break  # this call asks for everyone
            await asyncio.shield(self._probe)
        probing = not self._known
        if probing:
            self._probe = loop.create_future()
        try:
            self.asked += 1
            answer = await ask()
            self._known, self._absent = True, None
            return answer
        except ServiceCallError as e:
            if e.code == ABSENT:
                self._known, self._absent = False, (self._clock.monotonic(), e)
            raise
        finally:
            if probing and self._probe is not None:
                self._probe.set_result(None)
                self._probe = None
