"""The store service: JetStream -> SQLite event log, and reads over NATS.

A durable push consumer (AckAll, bounded by ``max_ack_pending``) delivers
every event subject of the stream. Messages are buffered by the subscription
callback and written by one writer task in batches: validate each, append the
valid ones and the dead letters plus the stream position in one SQLite
transaction, commit, and only then ack the batch's last message (AckAll acks
everything before it). A crash before the commit redelivers the batch; a
crash after it redelivers events whose ids the log already holds, and they
are ignored. Either way every acknowledged event is stored exactly once.

On start the consumer is checked against the log's stored position: when the
consumer has delivered or acked past what the log committed (a crash, or a
new events.db), it is recreated to start right after the log's position, so
recovery does not wait for ``ack_wait`` to expire.

After each commit the new events are rebroadcast on ``stored.<type>`` as
``{"seq": N, "event": {...}}`` (core NATS) so live followers learn positions.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas import decode_event
from schemas.subjects import DLQ_PREFIX, STORE_READ, STORE_STATS, STORED_PREFIX, STREAM
from schemas.system import StoreReadRequest, StoreStats, encode_stored
from services.runtime.endpoints import endpoint
from services.runtime.errors import GpurouteError
from services.runtime.service import Service
from services.store.eventlog import EventLog, Row

MAX_BATCH = 10_000
MAX_ACK_PENDING = 20_000
DEAD_REASON = "Gpuroute-Dead-Reason"


def one_line(text: str) -> str:
    return " ".join(text.split())


class StoreService(Service):
    name = "store"
    description = "Appends every event to the SQLite event log; serves reads."

    durable = "store"
    eventlog: EventLog

    async def setup(self) -> None:
        self.eventlog = await EventLog.open(self.config.events_db, tracking_name=self.durable)
        self._buffer: list[Msg] = []
        self._pending = asyncio.Event()
        nats_cfg = self.config.nats
        await self.bus.ensure_streams(nats_cfg.stream_replicas, nats_cfg.stream_max_age_s)
        self._sub = await self._subscribe()
        assert self.micro is not None
        await self.micro.add_endpoint(
            name="read", subject=STORE_READ, handler=endpoint(StoreReadRequest, self.read)
        )
        await self.micro.add_endpoint(
            name="stats", subject=STORE_STATS, handler=endpoint(_Empty, self.stats)
        )
        self.spawn(self._writer(), "writer")

    async def teardown(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()
        if self._buffer:  # commit what was delivered, so a clean stop redelivers nothing
            with contextlib.suppress(GpurouteError, nats.errors.Error):
                await self._write(self._buffer)
        await self.eventlog.close()

    async def _subscribe(self) -> JetStreamContext.PushSubscription:
        js = self.bus.js
        position = await self.eventlog.position()
        try:
            info = await js.consumer_info(STREAM, self.durable)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and (
            info.delivered.stream_seq != position or info.ack_floor.stream_seq != position
        ):
            self.log.info(
                "consumer ahead of the event log: recreating it",
                extra={"fields": {"log_position": position,
                                  "delivered": info.delivered.stream_seq}},
            )  # fmt: skip
            await js.delete_consumer(STREAM, self.durable)
            info = None
        if info is None:
            config = ConsumerConfig(
                durable_name=self.durable,
                deliver_subject=self.bus.nc.new_inbox(),
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if position else DeliverPolicy.ALL,
                opt_start_seq=position + 1 if position else None,
                ack_policy=AckPolicy.ALL,
                ack_wait=30,
                max_ack_pending=MAX_ACK_PENDING,
                idle_heartbeat=5,
            )
            info = await js.add_consumer(STREAM, config)
        return await js.subscribe_bind(
            STREAM, info.config, self.durable, cb=self._on_message, manual_ack=True
        )

    async def _on_message(self, msg: Msg) -> None:
        self._buffer.append(msg)
        self._pending.set()

    async def _writer(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            while self._buffer:
                batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                await self._write_retrying(batch)

    async def _write_retrying(self, batch: list[Msg]) -> None:
        delay = 0.1
        while True:
            try:
                await self._write(batch)
                return
            except (GpurouteError, nats.errors.Error) as e:
                # nothing was acked: retrying the same batch is safe
                self.log.error("batch write failed, retrying", extra={"fields": {"error": str(e)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write(self, batch: list[Msg]) -> None:
        rows: list[Row] = []
        dead: list[tuple[int, str, str, bytes]] = []
        for msg in batch:
            try:
                event = decode_event(msg.data)
                if event.type != msg.subject:
                    raise ValueError(f"type {event.type!r} does not match subject {msg.subject!r}")
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                dead.append((msg.metadata.sequence.stream, msg.subject, one_line(str(e)), msg.data))
                continue
            rows.append((event.id, msg.subject, event.key, event.ts, msg.data))
        for stream_seq, subject, reason, body in dead:
            await self.bus.publish_raw(
                DLQ_PREFIX + subject,
                body,
                {DEAD_REASON: reason, "Nats-Msg-Id": f"dlq-{stream_seq}"},
            )
            self.log.warning(
                "dead letter", extra={"fields": {"subject": subject, "reason": reason}}
            )
        position = batch[-1].metadata.sequence.stream
        stored = await self.eventlog.append(rows, position, dead)
        await batch[-1].ack()
        publish = self.bus.nc.publish
        for seq, type_, body in stored:
            await publish(STORED_PREFIX + type_, encode_stored(seq, body))

    async def read(self, req: StoreReadRequest) -> bytes:
        prefixes = [p for p in (req.type, *(req.types or ())) if p]
        rows = await self.eventlog.read(req.after, req.limit, prefixes, req.key, req.last)
        items = b",".join(encode_stored(seq, body) for seq, body in rows)
        return b'{"events":[%s],"last_seq":%d}' % (items, self.eventlog.last_seq)

    async def stats(self, _: _Empty) -> StoreStats:
        count, last_seq, dead = await self.eventlog.counts()
        return StoreStats(
            count=count,
            last_seq=last_seq,
            stream_seq=await self.eventlog.position(),
            file_bytes=self.eventlog.file_bytes(),
            dead_letters=dead,
            path=str(self.eventlog.path),
        )


class _Empty(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass
