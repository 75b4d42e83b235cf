"""The store's durable JetStream consumer, and which stream it reads.

A position in a stream means something only in that stream: when the
JetStream directory is lost or replaced, or the stream is deleted and
recreated, the new stream numbers from 1 again and resuming "after position
N" would skip its first N events. So the log records the stream's
``created`` time beside its position (:class:`~services.store.eventlog.EventLog`),
and :meth:`Feed.stream` compares them: another stream means start again from
its beginning (event ids are unique, so nothing already held is stored twice).

The consumer itself can vanish too (deleted through the JetStream API, lost
with the stream, its subscription closed with a connection): :meth:`Feed.healthy`
says whether the consumer exists and is bound to this subscription, and
:meth:`Feed.subscribe` (re)creates it to start right after the log's position.

Deliveries can vanish as well: what the server had pushed into a connection
that dropped never arrives, and after nats-py's reconnect (the same
subscription, subscribed again) delivery goes on after it; it would not be
redelivered, for the store acks a later message with AckAll, which acks every
one before it. So the feed checks that each delivery's consumer sequence
(also in the ``$JS.ACK`` reply; a redelivery gets a new one too) follows the
last one, and an idle heartbeat's ``Nats-Last-Consumer`` that it saw them all.
On a gap it takes nothing more, :meth:`Feed.healthy` names the lost deliveries,
and :attr:`Feed.broken` is set so the service repairs at once: it commits what
came before the gap and :meth:`Feed.subscribe` recreates the consumer at the
log's position, from where JetStream delivers again.

Receiving: a catching-up store spent more than half of its main thread in
nats-py turning each delivered message into a ``Msg`` (header parsing alone
18%: every event carries ``Nats-Msg-Id``), queueing it and running a callback
task. The store needs none of that: only the subject, the body, and the
``$JS.ACK`` reply subject (the stream position; the ack goes to it). So the
deliver subject is a tapped subscription (``services/runtime/tap.py``): each
message reaches :meth:`Feed._deliver` as bytes, in the parser's step. JetStream
status messages (idle heartbeats, flow control requests) are answered or
skipped; a message without a ``$JS.ACK`` reply did not come from the
consumer and is counted in :attr:`Feed.foreign` and logged, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas.subjects import STREAM
from services.runtime.bus import Bus
from services.runtime.logs import get_logger
from services.runtime.tap import RawSubscription, subscribe_raw
from services.store.eventlog import EventLog

MAX_ACK_PENDING = 20_000
IDLE_HEARTBEAT_S = 5.0

log = get_logger("store")

Delivered = tuple[bytes, int, bytes, bytes]
"""One message from the consumer: (subject, stream position, the ``$JS.ACK``
reply subject to ack it on, body)."""


def ack_sequences(reply: bytes) -> tuple[int, int] | None:
    """(stream position, consumer sequence) of a ``$JS.ACK`` reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``,
    or 11 tokens and more with a domain and an account hash after ``ACK``;
    None when it is not one."""
    tokens = reply.split(b".")
    if len(tokens) < 9 or tokens[0] != b"$JS" or tokens[1] != b"ACK" or len(tokens) == 10:
        return None
    stream, consumer = tokens[5:7] if len(tokens) == 9 else tokens[7:9]
    if not (stream.isdigit() and consumer.isdigit()):
        return None
    return int(stream), int(consumer)


def stream_position(reply: bytes) -> int | None:
    """The stream position in a ``$JS.ACK`` reply subject; None when it is not one."""
    sequences = ack_sequences(reply)
    return None if sequences is None else sequences[0]


def last_consumer_sequence(headers: bytes) -> int | None:
    """``Nats-Last-Consumer`` of an idle heartbeat's header block (None: absent)."""
    at = headers.find(b"Nats-Last-Consumer:")
    if at < 0:
        return None
    value = headers[at + len(b"Nats-Last-Consumer:") :].split(b"\r\n", 1)[0].strip()
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class StreamCheck:
    created: str
    """The ``created`` time of the stream now on the server (ISO 8601)."""
    reset: str | None
    """Why the log's position does not belong to this stream (None: it does)."""


class Feed:
    def __init__(
        self,
        bus: Bus,
        eventlog: EventLog,
        durable: str,
        on_message: Callable[[Delivered], None],
        ensure_streams: Callable[[], Awaitable[None]],
    ) -> None:
        self.bus = bus
        self.eventlog = eventlog
        self.durable = durable
        self._on_message = on_message
        self._ensure_streams = ensure_streams
        self.sub: RawSubscription | None = None
        """The subscription whose messages go to ``on_message`` (None: none)."""
        self._unbound_checks = 0
        self.foreign = 0
        """Messages on the deliver subject that did not come from the consumer."""
        self._next = 1
        """The consumer sequence the next delivery must have."""
        self._lost: str | None = None
        """The deliveries found missing since the last subscribe (None: none)."""
        self.gaps = 0
        """Gaps found in the deliveries (each repaired by a new subscribe)."""
        self.broken = asyncio.Event()
        """Set when a gap is found: the consumer must be recreated now."""

    async def stream(self) -> StreamCheck:
        """The stream on the server (created again when missing) and whether the
        log's position belongs to it. Raises ``nats.errors.Error`` when
        JetStream does not answer."""
        try:
            info = await self.bus.js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            await self._ensure_streams()
            info = await self.bus.js.stream_info(STREAM)
        created = info.created.isoformat() if info.created else ""
        position, recorded = await self.eventlog.tracking()
        if recorded is None:  # a log from before streams were recorded
            last = info.state.last_seq if info.state else 0
            if position > last:
                return StreamCheck(created, f"the stream ends at {last}, before {position}")
            return StreamCheck(created, None)
        if recorded != created:
            return StreamCheck(created, f"stream created {created}, position was in {recorded}")
        return StreamCheck(created, None)

    async def subscribe(self) -> None:
        """Bind to the durable consumer, first recreating it to start right
        after the log's position when it is missing or has delivered or acked
        anything else (a crash, a new events.db, a reset)."""
        await self.unsubscribe()
        js = self.bus.js
        position = await self.eventlog.position()
        try:
            info = await js.consumer_info(STREAM, self.durable)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and (
            info.delivered.stream_seq != position
            or info.ack_floor.stream_seq != position
            or not info.config.deliver_subject  # a pull consumer under our name
        ):
            log.info(
                "consumer is not at the event log's position: recreating it",
                extra={"fields": {"log_position": position,
                                  "delivered": info.delivered.stream_seq}},
            )  # fmt: skip
            with contextlib.suppress(nats.js.errors.NotFoundError):
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
                idle_heartbeat=IDLE_HEARTBEAT_S,
            )
            info = await js.add_consumer(STREAM, config)
        # nothing is pending (else it was recreated): the next delivery is the next sequence
        self._next, self._lost = info.delivered.consumer_seq + 1, None
        self.broken.clear()
        self.sub = await subscribe_raw(
            self.bus.nc, info.config.deliver_subject or "", self._deliver
        )
        self._unbound_checks = 0

    def _deliver(
        self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> Awaitable[None] | None:
        if headers is not None and headers[8:9] == b" ":  # "NATS/1.0 100 Idle Heartbeat"
            if reply:  # a flow control request
                return self.bus.nc.publish(reply.decode())
            last = last_consumer_sequence(headers)
            if last is not None and last >= self._next and self._lost is None:  # a lost tail
                self._gap(self._next, last)
            return None
        sequences = ack_sequences(reply)
        if sequences is None:
            self.foreign += 1
            log.warning(
                "message on the store's deliver subject without a JetStream reply: ignored",
                extra={"fields": {"reply": reply[:100].decode(errors="replace"),
                                  "size": len(data), "count": self.foreign}},
            )  # fmt: skip
            return None
        position, delivery = sequences
        if self._lost is not None:  # delivered again once the consumer is recreated
            return None
        if delivery != self._next:
            self._gap(self._next, delivery - 1)
            return None
        self._next = delivery + 1
        self._on_message((subject, position, reply, data))
        return None

    def _gap(self, first: int, last: int) -> None:
        self._lost = (
            f"deliveries {first}..{last} of the consumer were lost (a reconnect?)"
            if last >= first
            else f"delivery {last + 1} of the consumer came again after {first - 1}"
        )
        self.gaps += 1
        self.broken.set()
        log.warning("store consumer lost deliveries", extra={"fields": {"problem": self._lost}})

    async def unsubscribe(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            await sub.unsubscribe()

    async def healthy(self) -> str | None:
        """None when the consumer exists and delivers to this subscription, all
        of its deliveries arrived, else what is wrong. Raises
        ``nats.errors.Error`` when JetStream does not answer."""
        if self._lost is not None:
            return self._lost
        sub = self.sub
        if sub is None:
            return "not subscribed"
        if not sub.active or sub.nc is not self.bus.nc:
            return "its subscription ended"
        try:
            info = await self.bus.js.consumer_info(STREAM, self.durable)
        except nats.js.errors.NotFoundError:
            return "the consumer was deleted"
        # just after a reconnect the server may not have seen the interest yet
        self._unbound_checks = 0 if info.push_bound else self._unbound_checks + 1
        if self._unbound_checks >= 2:
            return "the consumer delivers to nobody"
        return None
