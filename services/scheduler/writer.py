"""One ordered, pipelined publisher for the events of every job an instance drives.

A job's driver publishes its events one after the other and waits for each
ack before it goes on (a job never has two events in flight, so its events
reach the log in the order it decided them, whatever happens to a burst). The
cost was elsewhere: every ``Bus.publish`` is a JetStream request of its own
(an inbox, a future, an ack decoded into a dataclass), ~45% of a driver's time
in the lifecycle benchmark. Here every event any job emits goes into one
queue; :meth:`Writer.run` takes what queued while the previous burst was on
the wire and sends it with :meth:`Bus.send_many` (one ack inbox, acks matched
by token), and a second loop resolves each event's future once its burst is
acknowledged. Bursts are sent without waiting for the previous burst's acks
(at most ``BURSTS_IN_FLIGHT`` unacknowledged), so the wire carries events in
the order they were queued.

Exactly once: every event keeps ``Nats-Msg-Id`` = its id; an event whose ack
is lost or refused is re-sent by :meth:`Sent.acked` with the same id, which
JetStream drops if it already holds it. A burst that cannot be published
(:class:`BusError`) fails the futures of its events only: each waiting
driver sees the error as it would from ``Bus.publish`` (the job fails, or the
endpoint answers 503); the writer goes on with the next burst.

A claim (an event whose duplicate id means "another instance was first")
needs the ack's ``duplicate`` flag, which ``send_many`` does not report: the
scheduler sends those with ``js.publish`` itself (``SchedulerService.claim``).
"""

from __future__ import annotations

import asyncio

from schemas import Event
from services.runtime.bus import Bus, Sent
from services.runtime.errors import BusError

BURSTS_IN_FLIGHT = 64
"""Bursts sent whose acks are not all in; past it, sending waits."""
MAX_BURST = 2048
"""Events taken from the queue for one burst (the rest go in the next)."""

_Queued = tuple[Event, asyncio.Future[None]]


class Writer:
    """Queue events in order; :meth:`run` (supervised by the service) sends them."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.bursts = 0
        """Bursts sent so far (a test reads it; the benchmark's events per burst)."""

    def send(self, event: Event) -> asyncio.Future[None]:
        """Queue ``event``; the future is done once JetStream acknowledged it
        (or holds the :class:`BusError` that stopped it)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:  # cancelled with its service: nobody would ever answer
            future.set_exception(BusError("the scheduler's event writer stopped"))
            return future
        self._queue.append((event, future))
        self._wake.set()
        return future

    async def publish(self, event: Event) -> None:
        """Queue ``event`` and wait for its ack (``Bus.publish`` without the request)."""
        await self.send(event)

    async def run(self) -> None:
        unacked: asyncio.Queue[tuple[Sent | None, list[_Queued]]] = asyncio.Queue(BURSTS_IN_FLIGHT)
        answers = asyncio.create_task(self._answer(unacked), name="writer-acks")
        self._closed = False
        try:
            while True:
                await self._wake.wait()
                batch, self._queue = self._queue[:MAX_BURST], self._queue[MAX_BURST:]
                if not self._queue:
                    self._wake.clear()
                batch = [(e, f) for e, f in batch if not f.cancelled()]
                if not batch:
                    continue
                try:
                    sent: Sent | None = await self.bus.send_many(e for e, _ in batch)
                except BusError:  # an event over the size limit: none of them was sent
                    batch = _sendable(batch)
                    sent = await self.bus.send_many(e for e, _ in batch) if batch else None
                self.bursts += 1
                await unacked.put((sent, batch))
        except asyncio.CancelledError:  # the service stops (a crash is restarted instead)
            self._closed = True
            raise
        finally:
            answers.cancel()
            await asyncio.gather(answers, return_exceptions=True)
            stopped = BusError("the scheduler's event writer stopped")
            _fail(self._queue, stopped)
            self._queue = []

    async def _answer(self, unacked: asyncio.Queue[tuple[Sent | None, list[_Queued]]]) -> None:
        while True:
            sent, batch = await unacked.get()
            if sent is None:
                continue
            try:
                await sent.acked()
            except BusError as e:
                _fail(batch, e)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


def _sendable(batch: list[_Queued]) -> list[_Queued]:
    """The events of ``batch`` within the size limit; the others' futures fail."""
    kept = []
    for event, future in batch:
        try:
            Bus._encode(event)  # the size check send_many makes
        except BusError as e:
            future.set_exception(e)
            continue
        kept.append((event, future))
    return kept


def _fail(batch: list[_Queued], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
