"""The one way services talk to NATS.

:class:`Bus` owns a NATS connection and its JetStream context. Every event is
published through :meth:`Bus.publish` (waits for the JetStream ack) or
:meth:`Bus.publish_many` (pipelined: thousands in flight, acks matched as
they come), always with ``Nats-Msg-Id`` = event id. Because JetStream drops a
duplicate id inside its window, a publish whose ack was lost (timeout, server
restart) is simply sent again: retrying never stores an event twice.

The connection reconnects forever; events JetStream acknowledged are on disk
and survive a server restart. A connection can still end for good (the server
closes it on a protocol error, and nats-py then never reconnects): the bus
then sets :attr:`Bus.lost`, and whoever runs the service (``runner.py``)
replaces the bus and the service instance.

Every encoded event is at most ``limits.MAX_EVENT_BYTES``: a bigger one is
refused here, with its type, size and the limit, before anything is sent
(NATS would close the connection for a message over ``max_payload``, and
every wrapper the store puts around an event must still fit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from schemas import Event, encode_event, limits, make_event, stream_subjects
from schemas.subjects import DLQ_PREFIX, DLQ_STREAM, STREAM
from services.runtime.clock import Clock, SystemClock
from services.runtime.credentials import Credentials
from services.runtime.errors import BusError, ServiceCallError
from services.runtime.ids import IdGenerator
from services.runtime.logs import get_logger
from services.runtime.tap import subscribe_raw

log = get_logger("bus")
T = TypeVar("T")

ERROR_CODE = "Nats-Service-Error-Code"
ERROR_TEXT = "Nats-Service-Error"
DEDUPE_WINDOW_S = 120.0
PUBLISH_WINDOW = 4096
"""Most publishes one :meth:`Bus.publish_many` keeps in flight; past it, it
waits until half of them are acknowledged."""

MAX_REFUSALS = 8
"""Distinct permission refusals a bus remembers (``Bus.refused``)."""
FRAMES_BYTES = 512 * 1024
"""Bytes of a burst framed before they are handed to the client (under
nats-py's 2 MiB pending buffer, at which ``publish`` flushes)."""
_PLAIN_ID = re.compile(r"[0-9A-Za-z._:-]{1,128}")
"""Ids written into a frame's header as they are (ours are UUIDs); any other
goes through ``publish``, which cleans header values."""

_PENDING, _ACKED, _FAILED = 0, 1, 2


class _PubAck(msgspec.Struct):
    """The part of a JetStream publish ack we read (``seq``; ``error`` if refused)."""

    seq: int = 0
    error: dict[str, Any] | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
"""One reply decoder per response type of :meth:`Bus.call`, built on first use."""


class _Burst:
    """Ack bookkeeping of one :meth:`Bus.publish_many` call."""

    __slots__ = ("_waiter", "_wake_at", "outstanding", "status")

    def __init__(self) -> None:
        self.status = bytearray()  # per event: _PENDING, _ACKED, _FAILED
        self.outstanding = 0
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = 0

    def resolve(self, i: int, ok: bool) -> None:
        self.status[i] = _ACKED if ok else _FAILED
        self.outstanding -= 1
        waiter = self._waiter
        if waiter is not None and self.outstanding <= self._wake_at and not waiter.done():
            waiter.set_result(None)

    async def wait(self, at_most: int, timeout: float) -> bool:
        """Wait until at most ``at_most`` acks are outstanding; False when no
        ack at all came for ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        while self.outstanding > at_most:
            before = self.outstanding
            self._waiter, self._wake_at = loop.create_future(), at_most
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                if self.outstanding == before:
                    return False
            finally:
                self._waiter = None
        return True


class Sent:
    """A burst :meth:`Bus.send_many` put on the wire; :meth:`acked` waits for its acks."""

    __slots__ = ("_bus", "burst", "sent", "unsent")

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.burst = _Burst()
        self.sent: list[tuple[Event, bytes, str]] = []  # event, encoding, ack token
        self.unsent: list[tuple[Event, bytes]] = []  # could not be sent: re-sent in acked()

    async def acked(self) -> int:
        """Wait until every event of the burst is acknowledged; returns how many.

        Events whose ack is an error, does not come while the burst makes no
        progress for ``publish_timeout`` (a reconnect loses in-flight acks), or
        that could not be sent are re-sent one by one, in the burst's order,
        with :meth:`Bus.publish` (same ids, so nothing is stored twice; a
        refusal raises :class:`BusError` as it does there)."""
        bus, burst, status = self._bus, self.burst, self.burst.status
        try:
            if burst.outstanding and not self.unsent:
                await burst.wait(0, bus.publish_timeout)
        finally:
            self.forget()
        retry = [(e, payload) for i, (e, payload, _) in enumerate(self.sent) if status[i] != _ACKED]
        for event, payload in retry + self.unsent:
            await bus._publish_encoded(event, payload)
        return len(self.sent) + len(self.unsent)

    def take_back(self, first: int) -> None:
        """Events ``first`` and after were not handed to the client: unsent."""
        status, waiting = self.burst.status, self._bus._acks_waiting
        for event, payload, token in self.sent[first:]:
            if waiting.pop(token, None) is not None:
                self.burst.outstanding -= 1
            self.unsent.append((event, payload))
        del self.sent[first:], status[first:]

    def forget(self) -> None:
        """Stop matching acks still pending (a late one is then ignored)."""
        status, waiting = self.burst.status, self._bus._acks_waiting
        for i, (_, _, token) in enumerate(self.sent):
            if status[i] == _PENDING:
                waiting.pop(token, None)


class _ConnState:
    """What the connection callbacks need to know about their bus."""

    __slots__ = ("closing", "connected_once", "lost", "refused")

    def __init__(self) -> None:
        self.closing = False  # set by close(): a disconnect we asked for is not news
        self.connected_once = False  # before it, the connect deadline's one error says it all
        self.lost = asyncio.Event()  # closed for good, and not by close()
        self.refused: dict[str, None] = {}  # the server's permission refusals, newest last


def _check_size(what: str, size: int, limit: int = limits.MAX_EVENT_BYTES) -> None:
    if size > limit:
        raise BusError(f"{what} is {size} bytes, over the limit of {limit} bytes: not sent")


class _Frames:
    """The ``HPUB`` frames of a :meth:`Bus.send_many` burst, handed to the
    client in one command (its pending buffer and flusher, the path
    ``publish`` ends in; nats-py is pinned below 3), as the store's broadcast
    and ``endpoints.reply_many`` do: ``publish`` checks, builds headers and
    signals the flusher per event, about a tenth of a busy writer's time.
    The bytes on the wire are those ``publish`` would send. Only while the
    client is connected and for frames under ``max_payload``
    (:meth:`add` says False otherwise: the caller publishes that one)."""

    __slots__ = ("first", "nc", "parts", "sent", "size")

    def __init__(self, nc: Client, sent: Sent) -> None:
        self.nc, self.sent = nc, sent
        self.parts: list[bytes] = []
        self.first = 0  # index in sent.sent of the first framed event
        self.size = 0

    def add(self, event: Event, payload: bytes, reply: str) -> bool:
        nc = self.nc
        if not nc.is_connected or nc.is_draining_pubs or not _PLAIN_ID.fullmatch(event.id):
            return False  # publish refuses (draining) or cleans (an odd id) what frames would not
        header = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n" % event.id.encode()
        if len(header) + len(payload) > nc.max_payload:
            return False
        if not self.parts:
            self.first = len(self.sent.sent)
        self.parts.append(b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            event.type.encode(), reply.encode(), len(header), len(header) + len(payload),
            header, payload))  # fmt: skip
        self.size += len(payload)
        return True

    @property
    def full(self) -> bool:
        """Enough bytes framed to hand over (what ``publish`` would have
        flushed by now): the burst is not held in memory whole."""
        return self.size >= FRAMES_BYTES

    async def flush(self) -> bool:
        """Hand the frames to the client; False when it refused them (their
        events went back to the burst's unsent list, re-sent in order by
        :meth:`Sent.acked`: the caller sends no more of the burst)."""
        if not self.parts:
            return True
        nc, parts, n = self.nc, self.parts, len(self.parts)
        self.parts, size = [], self.size
        self.size = 0
        try:
            await nc._send_command(b"".join(parts))
            nc.stats["out_msgs"] += n
            nc.stats["out_bytes"] += size
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
        except nats.errors.Error:
            self.sent.take_back(self.first)
            return False
        return True


class Bus:
    def __init__(
        self,
        nc: Client,
        *,
        source: str,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        publish_timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=publish_timeout)
        self.source = source
        self.clock = clock or SystemClock()
        self.ids = ids or IdGenerator(self.clock)
        self.publish_timeout = publish_timeout
        self._ack_prefix: str | None = None
        self._ack_tokens = itertools.count()
        self._acks_waiting: dict[str, tuple[_Burst, int]] = {}
        self._conn = _ConnState()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        source: str,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        connect_deadline: float = 10.0,
        credentials: Credentials | None = None,
        publish_timeout: float = 5.0,
    ) -> Bus:
        """Connect (retrying until ``connect_deadline`` seconds) and reconnect forever after.

        ``url``: one server, or several separated by commas (the nodes of a
        cluster; nats-py picks among them and moves to another when one goes).
        ``credentials``: log in as that user (its password and inbox prefix);
        None for a server without authentication. ``publish_timeout``: seconds a
        publish waits for its ack before it is re-sent (a test that restarts
        nats-server shortens it: an ack lost in the restart costs that long)."""
        login: dict[str, Any] = {}
        if credentials is not None:
            login = dict(user=credentials.user, password=credentials.password,
                         inbox_prefix=credentials.inbox_prefix)  # fmt: skip

        conn = _ConnState()

        async def on_disconnect() -> None:
            if not conn.closing:
                log.warning("nats disconnected", extra={"fields": {"service": source}})

        async def on_reconnect() -> None:
            log.info("nats reconnected", extra={"fields": {"service": source}})

        async def on_error(e: Exception) -> None:
            text = " ".join(str(e).split())[:300]
            if "permissions violation" in text.lower():  # a subscription that gets nothing
                conn.refused.pop(text, None)
                conn.refused[text] = None
                while len(conn.refused) > MAX_REFUSALS:
                    del conn.refused[next(iter(conn.refused))]
            if conn.connected_once:
                log.warning("nats error", extra={"fields": {"service": source, "error": str(e)}})

        async def on_closed() -> None:
            if not conn.closing:
                log.error(
                    "nats connection closed for good (it will not reconnect by itself)",
                    extra={"fields": {"service": source}},
                )
                conn.lost.set()

        # "nats://a:4222,nats://b:4222": every node of a cluster, tried in turn
        servers = [u.strip() for u in url.split(",") if u.strip()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connect_deadline
        while True:
            try:
                # nats-py retries a first connect forever with max_reconnect_attempts=-1:
                # the deadline bounds it, so an unreachable URL is one error, not a hang
                nc = await asyncio.wait_for(
                    nats.connect(
                        servers,
                        name=f"gpuroute-{source}",
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.25,
                        connect_timeout=2,
                        disconnected_cb=on_disconnect,
                        reconnected_cb=on_reconnect,
                        error_cb=on_error,
                        closed_cb=on_closed,
                        **login,
                    ),
                    timeout=max(0.1, deadline - loop.time()),
                )
                conn.connected_once = True
                bus = cls(nc, source=source, clock=clock, ids=ids, publish_timeout=publish_timeout)
                bus._conn = conn
                return bus
            except (TimeoutError, OSError, nats.errors.Error) as e:
                if loop.time() >= deadline:
                    why = str(e) or f"no connection within {connect_deadline:g}s"
                    raise BusError(f"cannot connect to NATS at {url}: {why}") from e
                await asyncio.sleep(0.2)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    @property
    def refused(self) -> list[str]:
        """What the server refused this connection (a subscription or a
        publish its permissions do not allow), at most ``MAX_REFUSALS``,
        newest last: a part that silently gets nothing, shown in heartbeats."""
        return list(self._conn.refused)

    @property
    def lost(self) -> bool:
        """True when the connection ended for good without :meth:`close`."""
        return self._conn.lost.is_set() or (bool(self.nc.is_closed) and not self._conn.closing)

    async def wait_lost(self, poll_s: float = 1.0) -> None:
        """Return once the connection ended for good without :meth:`close`.

        nats-py reports that through ``closed_cb``, but skips the callback on
        some paths (a close while it is still connecting): ``is_closed`` is
        polled every ``poll_s`` seconds as well."""
        while not self.lost:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._conn.lost.wait(), poll_s)

    async def ensure_streams(self, replicas: int = 1, max_age_s: float = 7 * 24 * 3600) -> None:
        """Create or update the event stream and the dead-letter stream (idempotent)."""
        common: dict[str, Any] = dict(
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            duplicate_window=DEDUPE_WINDOW_S,
        )
        await self._upsert_stream(
            StreamConfig(name=STREAM, subjects=stream_subjects(), max_age=max_age_s, **common)
        )
        await self._upsert_stream(
            StreamConfig(name=DLQ_STREAM, subjects=[DLQ_PREFIX + ">"], max_age=max_age_s, **common)
        )

    async def _upsert_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # exists with another config (e.g. an older subject list): update in place
            await self.js.update_stream(config)
        except nats.errors.Error as e:
            raise BusError(f"cannot create stream {config.name}: {e}") from e

    # -- events ---------------------------------------------------------------

    def event(
        self,
        data: msgspec.Struct,
        *,
        key: str,
        causation: Event | None = None,
        correlation_id: str | None = None,
    ) -> Event:
        """Build an envelope with a fresh id, this bus's clock and source.

        With ``causation``, the new event continues that event's correlation.
        """
        eid = self.ids.new()
        if causation is not None:
            correlation_id = correlation_id or causation.correlation_id or causation.id
        return make_event(
            data,
            id=eid,
            key=key,
            ts=self.clock.now(),
            source=self.source,
            correlation_id=correlation_id or eid,
            causation_id=causation.id if causation is not None else None,
        )

    async def emit(
        self, data: msgspec.Struct, *, key: str, causation: Event | None = None
    ) -> Event:
        """Build and publish one event; return it once JetStream acknowledged it."""
        event = self.event(data, key=key, causation=causation)
        await self.publish(event)
        return event

    async def publish(self, event: Event, *, attempts: int = 5) -> int:
        """Publish and wait for the JetStream ack; returns the stream sequence.

        Retries on timeout / no responders with the same message id, so a lost
        ack never duplicates the event. An event over ``MAX_EVENT_BYTES``
        raises :class:`BusError` and is not sent.
        """
        return await self._publish_encoded(event, self._encode(event), attempts)

    @staticmethod
    def _encode(event: Event) -> bytes:
        payload = encode_event(event)
        _check_size(f"event {event.type} {event.id}", len(payload))
        return payload

    async def _publish_encoded(self, event: Event, payload: bytes, attempts: int = 5) -> int:
        headers = {"Nats-Msg-Id": event.id}
        for attempt in range(attempts):
            try:
                ack = await self.js.publish(event.type, payload, headers=headers)
                return int(ack.seq)
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError) as e:
                if attempt == attempts - 1:
                    raise BusError(f"publish {event.type} {event.id} not acknowledged: {e}") from e
                await asyncio.sleep(0.1 * 2**attempt)
            except nats.errors.Error as e:
                raise BusError(f"publish {event.type} {event.id} refused: {e}") from e
        raise AssertionError("unreachable")

    async def publish_many(self, events: Iterable[Event]) -> int:
        """Pipelined publish of a burst: :meth:`send_many`, then wait for every
        ack (:meth:`Sent.acked`). Returns how many were published."""
        return await (await self.send_many(events)).acked()

    async def send_many(self, events: Iterable[Event]) -> Sent:
        """Put a burst on the wire now, in order; its acks are awaited later
        with :meth:`Sent.acked` (call it exactly once), so that a writer can
        decide and send its next burst while this one's acks travel.

        A JetStream publish is a request whose reply is the ack. Here every
        event goes out as a plain publish whose reply subject is this bus's ack
        inbox plus a token, and one subscription on that inbox matches the acks
        to a per-burst record (no future, semaphore, or JSON-to-dataclass ack per
        message, as nats-py's ``publish_async`` has: about three times less CPU
        per event). At most ``PUBLISH_WINDOW`` of a burst are in flight: past
        it, sending waits until half of them are acknowledged.

        Every event is encoded and its size checked first: when one is over
        ``MAX_EVENT_BYTES`` this raises :class:`BusError` and none is sent.
        """
        encoded = [(event, self._encode(event)) for event in events]
        prefix = await self._ack_inbox()
        nc, waiting, tokens = self.nc, self._acks_waiting, self._ack_tokens
        sent = Sent(self)
        burst, status = sent.burst, sent.burst.status
        frames = _Frames(nc, sent)
        it = iter(encoded)
        try:
            for event, payload in it:
                if frames.full and not await frames.flush():
                    sent.unsent.append((event, payload))
                    sent.unsent.extend(it)
                    break
                if burst.outstanding >= PUBLISH_WINDOW:
                    if not await frames.flush() or not await burst.wait(
                        PUBLISH_WINDOW // 2, self.publish_timeout
                    ):
                        sent.unsent.append((event, payload))  # acks overdue: re-sent by acked()
                        sent.unsent.extend(it)
                        break
                token = str(next(tokens))
                if not frames.add(event, payload, prefix + token):
                    # one by one: nats-py buffers while reconnecting, or refuses
                    if not await frames.flush():  # what came before goes first
                        sent.unsent.append((event, payload))
                        sent.unsent.extend(it)
                        break
                    status.append(_PENDING)
                    waiting[token] = (burst, len(sent.sent))
                    try:
                        await nc.publish(event.type, payload, reply=prefix + token,
                                         headers={"Nats-Msg-Id": event.id})  # fmt: skip
                    except nats.errors.Error:  # closed, or down with its buffer full
                        del waiting[token]
                        status.pop()
                        sent.unsent.append((event, payload))
                        sent.unsent.extend(it)
                        break
                else:
                    status.append(_PENDING)
                    waiting[token] = (burst, len(sent.sent))
                sent.sent.append((event, payload, token))
                burst.outstanding += 1
            await frames.flush()
        except BaseException:  # cancelled while waiting for the window
            sent.forget()
            raise
        return sent

    async def _ack_inbox(self) -> str:
        """The ack inbox prefix of :meth:`publish_many` (subscribed on first use;
        nats-py re-subscribes it after a reconnect)."""
        if self._ack_prefix is None:
            prefix = self.nc.new_inbox() + "."
            start, waiting = len(prefix), self._acks_waiting

            def on_ack(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
                entry = waiting.pop(subject[start:].decode(errors="replace"), None)
                if entry is None:
                    return  # not ours any more: given up on, and re-sent
                burst, i = entry
                ok = False
                if headers is None or headers[8:9] != b" ":  # a status line: 503, no stream
                    try:
                        ok = _ack_decoder.decode(data).error is None
                    except msgspec.DecodeError:
                        ok = False
                burst.resolve(i, ok)

            # tapped: no Msg, header dict, queue or task per ack (one per event)
            await subscribe_raw(self.nc, prefix + "*", on_ack)
            self._ack_prefix = prefix
        return self._ack_prefix

    async def publish_raw(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish bytes to a stream subject (dead letters); waits for the ack.

        Payload and headers together are at most ``MAX_EVENT_BYTES``, like an
        event (a dead letter of something bigger must be cut by its sender)."""
        size = len(payload) + sum(len(k) + len(v) + 4 for k, v in (headers or {}).items())
        _check_size(f"message to {subject}", size)
        try:
            await self.js.publish(subject, payload, headers=headers)
        except nats.errors.Error as e:
            raise BusError(f"publish to {subject} failed: {e}") from e

    # -- request/reply ---------------------------------------------------------

    async def call(
        self, subject: str, request: Any, response_type: type[T], timeout: float = 5.0
    ) -> T:
        """Send a request to a ``nats.micro`` endpoint and decode its typed reply.

        Raises :class:`ServiceCallError` with the endpoint's error code (400 bad
        input, 404, 500) or 503 when nobody answers, 504 on timeout.
        """
        raw = await self.call_raw(subject, msgspec.json.encode(request), timeout)
        decoder = _decoders.get(response_type)
        if decoder is None:
            decoder = _decoders[response_type] = msgspec.json.Decoder(response_type)
        try:
            result: T = limits.decode(decoder, raw, what="reply")
            return result
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise ServiceCallError(subject, 502, f"malformed reply: {e}") from e

    async def call_raw(self, subject: str, payload: bytes, timeout: float = 5.0) -> bytes:
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError as e:
            raise ServiceCallError(subject, 503, "no service is answering") from e
        except nats.errors.TimeoutError as e:
            raise ServiceCallError(subject, 504, f"no reply within {timeout:g}s") from e
        except nats.errors.ConnectionClosedError as e:
            raise ServiceCallError(subject, 503, "NATS connection closed") from e
        headers = msg.headers or {}
        if ERROR_CODE in headers:
            try:
                code = int(headers[ERROR_CODE])
            except ValueError:
                code = 500
            raise ServiceCallError(subject, code, headers.get(ERROR_TEXT, "error"))
        return bytes(msg.data)

    async def flush(self) -> None:
        """Wait until the server has processed everything sent so far.

        Shielded: nats-py's ``flush`` waits on a future its read loop resolves
        when the PONG comes; cancelling the wait cancels that future, and the
        PONG arriving later then raises ``InvalidStateError`` inside the read
        loop, which ends it -- the connection stops answering while it looks
        connected. A cancelled caller here leaves the flush to finish on its own.
        """
        await asyncio.shield(self.nc.flush())

    async def close(self) -> None:
        """Drain (finish in-flight work, flush publishes) and close."""
        if self.nc.is_closed:
            return
        self._conn.closing = True
        try:
            await asyncio.wait_for(self.nc.drain(), timeout=5)
        except (TimeoutError, nats.errors.Error):
            # cannot drain (e.g. the server is gone): close without waiting
            with contextlib.suppress(OSError, nats.errors.Error):
                await self.nc.close()
