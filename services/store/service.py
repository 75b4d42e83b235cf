"""The store service: JetStream -> SQLite event log, and reads over NATS.

A durable push consumer (AckAll, bounded by ``max_ack_pending``) delivers
every event subject of the stream (:mod:`services.store.feed`, which hands
each message over without nats-py's per-message work). Messages are
buffered as they arrive and written by one writer task in
batches: classify each (:mod:`services.store.ingest`), append the valid ones
and the dead letters plus the stream position in one SQLite transaction,
commit, and only then ack the batch's last message (AckAll acks everything
before it). A crash before the commit redelivers the batch; a crash after it
redelivers events whose ids the log already holds, and they are ignored.
Either way every acknowledged event is stored exactly once. Only the append
is retried: a message is never a reason to stop, and what follows the commit
(the ack, the ``stored.<type>`` broadcast) is logged and counted when it
fails, never retried as a batch (a lost ack means a harmless redelivery;
followers repair a lost broadcast from the store).

A watch task checks every ``CHECK_S`` seconds that the stream is the one the
log's position belongs to and that the consumer still exists and delivers to
this process, and at once when the feed finds deliveries lost (a reconnect
dropped what the server had pushed: AckAll of a later message would ack them);
it repairs each (counted in ``StoreStats``). A stream reset
is also a notice in ``StoreStats.problems`` until ``gpuroute.store.acknowledge``.

After each commit the new events are rebroadcast on ``stored.<type>`` as
``{"seq": N, "event": {...}}`` (core NATS) so live followers learn positions.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import nats.errors

from schemas import limits
from schemas.subjects import STORE_ACKNOWLEDGE, STORE_READ, STORE_STATS
from schemas.system import StoreAcknowledgeRequest, StoreReadRequest, StoreStats
from services.runtime.endpoints import InFlight, endpoint
from services.runtime.errors import GpurouteError
from services.runtime.profiling import HotPaths, Reporter
from services.runtime.service import Service
from services.store.broadcast import broadcast
from services.store.eventlog import Dead, EventLog, Row, Stored
from services.store.feed import Delivered, Feed
from services.store.ingest import classify, dead_letter_message, one_line

MAX_BATCH = 10_000
CHECK_S = 2.0
"""How often the watch task checks the stream and the consumer."""
DEAD_IN_FLIGHT = 256
"""Dead letters republished at once, each waiting for its JetStream ack (one at
a time, 80,000 dead letters took minutes)."""
READS_IN_FLIGHT = 64
"""Reads answered at once (on ``reads.READERS`` threads); beyond it, requests
wait in nats-py's pending queue."""


class StoreService(Service):
    name = "store"
    description = "Appends every event to the SQLite event log; serves reads."

    durable = "store"
    eventlog: EventLog
    check_s = CHECK_S

    async def setup(self) -> None:
        self.eventlog = await EventLog.open(self.config.events_db, tracking_name=self.durable)
        self.hot = HotPaths("service.store")
        """The batch write, timed while the profiler flag is on."""
        self._buffer: list[Delivered] = []
        self._pending = asyncio.Event()
        self._lock = asyncio.Lock()
        """Held while a batch is written or the consumer is replaced."""
        self._conditions: dict[str, str] = {}
        self.consumer_recreated = self.stream_resets = 0
        self.broadcast_failures = self.dlq_publish_failures = 0
        await self._ensure_streams()
        self.feed = Feed(
            self.bus, self.eventlog, self.durable, self._on_message, self._ensure_streams
        )
        await self._check_stream()
        await self.feed.subscribe()
        assert self.micro is not None
        # each read in a task of its own: awaited in nats-py's callback, a read
        # kept every later one waiting while the other reader thread idled
        reads_in_flight = InFlight(READS_IN_FLIGHT, self.spawn)
        for name, subject, handler in (
            ("read", STORE_READ, endpoint(StoreReadRequest, self.read, in_flight=reads_in_flight)),
            ("stats", STORE_STATS, endpoint(_Empty, self.stats)),
            ("acknowledge", STORE_ACKNOWLEDGE, endpoint(StoreAcknowledgeRequest, self.ack)),
        ):
            await self.micro.add_endpoint(name=name, subject=subject, handler=handler)
        # neither should ever raise; if one does (a bug), it restarts after a backoff and
        # the heartbeat names it: a batch it held is redelivered after ack_wait
        self.supervise(self._writer, "writer")
        self.supervise(self._watch, "watch")
        reporter = Reporter(self.bus, self.hot, self.log, self.config.budget.profile_flush_s)
        self.supervise(reporter.follow_flags, "perf-flags")
        self.supervise(reporter.report, "hot-paths")

    async def teardown(self) -> None:
        await self.feed.unsubscribe()
        if self._buffer:  # commit what was delivered, so a clean stop redelivers nothing
            with contextlib.suppress(GpurouteError, nats.errors.Error):
                await self._write(self._buffer)
        await self.eventlog.close()

    async def _ensure_streams(self) -> None:
        nats_cfg = self.config.nats
        await self.bus.ensure_streams(nats_cfg.stream_replicas, nats_cfg.stream_max_age_s)

    def _on_message(self, delivered: Delivered) -> None:
        self._buffer.append(delivered)
        self._pending.set()

    # -- the stream and the consumer -------------------------------------------

    async def _check_stream(self) -> bool:
        """Make the log follow the stream on the server; True after a reset
        (the caller then subscribes again, from the new stream's start)."""
        check = await self.feed.stream()
        if check.reset is None:
            if self.eventlog.stream_created != check.created:
                await self.eventlog.adopt_stream(check.created)
            return False
        await self.feed.unsubscribe()
        await self._flush_delivered()  # the old stream's last events, if any
        position = await self.eventlog.position()
        notice = (
            f"JetStream stream was reset ({check.reset}): the store read the new stream "
            f"from its start instead of after position {position}; events published to "
            "the old stream that it had not stored are lost. Acknowledge with "
            "gpuroute.store.acknowledge."
        )
        await self.eventlog.restart_tracking(check.created, notice)
        self.stream_resets += 1
        self.log.warning(
            "stream reset: storing the new stream from its start",
            extra={"fields": {"reason": check.reset, "old_position": position}},
        )
        return True

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # a gap in the deliveries: repair now
                await asyncio.wait_for(self.feed.broken.wait(), self.check_s)
            self.feed.broken.clear()  # a repair that fails is tried again after check_s
            try:
                await self._repair()
                self._conditions.pop("watch", None)
            except (nats.errors.Error, GpurouteError) as e:
                self._conditions["watch"] = one_line(f"cannot check the JetStream consumer: {e}")
                self.log.warning("consumer check failed", extra={"fields": {"error": str(e)}})

    async def _repair(self) -> None:
        """One check of the stream and the consumer; recreate what is wrong."""
        async with self._lock:
            if await self._check_stream():
                await self.feed.subscribe()
                return
            problem = await self.feed.healthy()
            if problem is None:
                return
            await self.feed.unsubscribe()
            await self._flush_delivered()
            self.consumer_recreated += 1
            self.log.warning(
                "store consumer lost: recreating it at the log's position",
                extra={"fields": {"problem": problem, "position": await self.eventlog.position()}},
            )
            await self.feed.subscribe()

    async def _flush_delivered(self) -> None:
        """Commit what was delivered before the subscription ended (the lock is
        held), so a consumer recreated after it starts where the log really is."""
        while self._buffer:
            batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
            await self._write_retrying(batch)

    # -- writing ---------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            while self._buffer:
                async with self._lock:
                    batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                    if batch:
                        await self._write_retrying(batch)

    async def _write_retrying(self, batch: list[Delivered]) -> None:
        delay = 0.1
        while True:
            try:
                await self._write(batch)
                self._conditions.pop("writer", None)
                return
            except Exception as e:  # nothing was acked: retrying the same batch is safe
                self._conditions["writer"] = one_line(f"writing to the event log fails: {e}")
                self.log.error(
                    "batch write failed, retrying",
                    exc_info=not isinstance(e, GpurouteError),
                    extra={"fields": {"error": str(e)}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write(self, batch: list[Delivered]) -> None:
        rows: list[Row] = []
        dead: list[Dead] = []
        for raw_subject, position, _, data in batch:
            subject = raw_subject.decode(errors="replace")
            row = classify(subject, data)
            if isinstance(row, str):
                dead.append((position, subject, row, data))
            else:
                rows.append(row)
        for i in range(0, len(dead), DEAD_IN_FLIGHT):
            await asyncio.gather(*(self._dead_letter(d) for d in dead[i : i + DEAD_IN_FLIGHT]))
        _, position, reply, _ = batch[-1]
        with self.hot.span("store.batch_write"):
            stored = await self.eventlog.append(rows, position, dead)
        try:  # AckAll: acks the whole batch
            await self.bus.nc.publish(reply.decode())
        except nats.errors.Error as e:  # redelivered later, and ignored by id
            self.log.warning("ack failed after commit", extra={"fields": {"error": str(e)}})
        await self._broadcast(stored)

    async def _dead_letter(self, dead: Dead) -> None:
        """Republish on ``dlq.<subject>`` (never raises); the dead_letters
        table keeps it whole whether or not this works."""
        stream_seq, subject, reason, body = dead
        self.log.warning(
            "dead letter",
            extra={"fields": {"subject": subject, "size": len(body), "reason": reason}},
        )
        msg = dead_letter_message(dead, self.eventlog.stream_created or "")
        try:
            await self.bus.publish_raw(msg.subject, msg.body, msg.headers)
        except (GpurouteError, nats.errors.Error) as e:
            self.dlq_publish_failures += 1
            self.log.error(
                "dead letter kept in the log only: republish failed",
                extra={"fields": {"stream_seq": stream_seq, "error": str(e)}},
            )

    async def _broadcast(self, stored: list[Stored]) -> None:
        failures, error = await broadcast(self.bus.nc, stored)
        if failures:  # followers repair gaps from the store
            self.broadcast_failures += failures
            self.log.warning(
                "stored broadcast failed",
                extra={"fields": {"error": str(error), "failures": self.broadcast_failures}},
            )

    # -- endpoints -------------------------------------------------------------

    async def read(self, req: StoreReadRequest) -> bytes:
        prefixes = [p for p in (req.type, *(req.types or ())) if p]
        query = self.eventlog.query(
            req.after, req.limit, prefixes, req.key, req.last, req.patterns or ()
        )
        return await self.eventlog.read_reply(query, limits.MAX_PAGE_BYTES)

    async def stats(self, _: object = None) -> StoreStats:
        count, last_seq, dead = await self.eventlog.counts()
        problems = await self.eventlog.notices()
        return StoreStats(
            count=count,
            last_seq=last_seq,
            stream_seq=await self.eventlog.position(),
            file_bytes=self.eventlog.file_bytes(),
            dead_letters=dead,
            path=str(self.eventlog.path),
            consumer_recreated=self.consumer_recreated,
            stream_resets=self.stream_resets,
            broadcast_failures=self.broadcast_failures,
            problems=[*problems, *self._conditions.values()],
            stream_created=self.eventlog.stream_created,
            dlq_publish_failures=self.dlq_publish_failures,
            delivery_gaps=self.feed.gaps,
        )

    async def ack(self, _: StoreAcknowledgeRequest) -> StoreStats:
        n = await self.eventlog.acknowledge()
        if n:
            self.log.info("notices acknowledged", extra={"fields": {"count": n}})
        return await self.stats()


class _Empty(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass
