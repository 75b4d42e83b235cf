"""The store notices a lost consumer and a reset stream, repairs both, and
stores every acknowledged event."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator

from schemas.subjects import DLQ_STREAM, STORE_ACKNOWLEDGE, STREAM
from schemas.system import StoreStats
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError
from services.store.feed import ack_sequences, last_consumer_sequence, stream_position
from services.store.service import StoreService
from tests.store.support import dead_letters, stats, stored_ids
from tests.support import lifecycle, poll, restart_bus, watch_stored


def burst(bus: Bus, n: int, tag: str) -> list:  # type: ignore[type-arg]
    return [e for j in range(n // 4) for e in lifecycle(bus, f"job-{tag}-{j}")]


async def streams_ready(bus: Bus) -> bool:
    """Once the client has reconnected to the new server, its streams exist."""
    try:
        await bus.ensure_streams()
        return True
    except GpurouteError:
        return False


async def test_a_deleted_consumer_is_recreated_at_the_log_position(bus, fast_store, config, stored):
    first = burst(bus, 40, "a")
    await bus.publish_many(first)
    await stored.count(40)
    await bus.js.delete_consumer(STREAM, "store")
    later = burst(bus, 40, "b")
    await bus.publish_many(later)
    await stored.count(80)
    assert stored_ids(config.events_db) == [e.id for e in first + later]
    s = await stats(bus)
    assert (s.consumer_recreated, s.stream_resets, s.problems) == (1, 0, [])


async def test_a_deleted_stream_is_a_reset_reported_until_acknowledged(
    bus, fast_store, config, stored
):
    first = burst(bus, 40, "a")
    await bus.publish_many(first)
    await stored.count(40)
    await bus.js.delete_stream(STREAM)
    await bus.ensure_streams()  # a new stream, numbered from 1 again
    later = burst(bus, 400, "b")
    await bus.publish_many(later)
    await stored.count(440)
    assert stored_ids(config.events_db) == [e.id for e in first + later]
    s = await stats(bus)
    assert s.stream_resets == 1 and s.stream_seq == 400
    assert len(s.problems) == 1 and "reset" in s.problems[0]
    s = await bus.call(STORE_ACKNOWLEDGE, {}, StoreStats)
    assert s.problems == []


async def test_a_replaced_jetstream_directory_loses_no_event(fast_store, config, nats_server):
    """The server restarts as the same fixture (port kept), so it outlives the
    store's connection; the test's bus re-sends a lost ack after 0.5 s."""
    expected: list[str] = []
    async with restart_bus(nats_server.url) as bus, watch_stored(bus) as stored:
        for attempt in range(3):
            events = burst(bus, 200, f"r{attempt}")
            await bus.publish_many(events)
            expected += [e.id for e in events]
            await stored.count(len(expected), timeout=20)
            nats_server.stop()
            shutil.rmtree(nats_server.store_dir / "jetstream")
            nats_server.start()
            await poll(lambda: streams_ready(bus), timeout=20)  # the client's reconnect
        events = burst(bus, 200, "last")
        await bus.publish_many(events)
        expected += [e.id for e in events]
        await stored.count(len(expected), timeout=20)
        assert stored_ids(config.events_db) == expected
        s = await stats(bus)
        assert s.stream_resets == 3


async def test_a_reset_while_stopped_is_found_at_start_also_in_an_old_log(bus, config, stored):
    """An events.db written before streams were recorded (old tracking and
    dead_letters tables), position 50, and a new stream with 20 events."""
    config.events_db.parent.mkdir(parents=True)
    with sqlite3.connect(config.events_db) as conn:
        conn.executescript(
            """
            CREATE TABLE tracking (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
            INSERT INTO tracking VALUES ('store', 50);
            CREATE TABLE dead_letters (stream_seq INTEGER PRIMARY KEY, subject TEXT NOT NULL,
                                       reason TEXT NOT NULL, body BLOB NOT NULL);
            INSERT INTO dead_letters VALUES (3, 'job.submitted', 'old', x'00');
            """
        )
    events = burst(bus, 20, "n")
    await bus.publish_many(events)
    store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
    await store.start()
    try:
        await stored.count(20)
        assert stored_ids(config.events_db) == [e.id for e in events]
        s = await stats(bus)
        assert (s.stream_resets, s.dead_letters, len(s.problems)) == (1, 1, 1)
    finally:
        await store.stop()
        await store.bus.close()


def test_the_stream_position_is_read_from_the_ack_subject():
    assert stream_position(b"$JS.ACK.GPUROUTE.store.1.4711.12.1796020093905562753.0") == 4711
    v2 = b"$JS.ACK.hub.ACCHASH.GPUROUTE.store.2.815.13.1796020093905562753.3.tok"
    assert stream_position(v2) == 815
    forgeries = [b"", b"_INBOX.x", b"$JS.ACK.a.b.c"]
    forgeries += [b"$JS.ACK.S.c.1.x.1.1.0", b"$JS.NAK.S.c.1.4.4.1.0"]
    for forged in forgeries:
        assert stream_position(forged) is None


async def test_delivered_events_skip_nats_py_message_building(bus, fast_store, config, stored):
    """A catching-up store spent over half its time in nats-py building a Msg
    (and parsing its headers) per delivered event; the feed takes the bytes."""
    built = 0
    nc = fast_store.bus.nc
    build = nc._build_message

    def counting(*args):  # type: ignore[no-untyped-def]
        nonlocal built
        built += 1
        return build(*args)

    nc._build_message = counting
    events = burst(bus, 400, "m")
    await bus.publish_many(events)
    await stored.count(400)
    assert built < 40, f"nats-py built a message for {built} of 400 events"


async def test_a_forged_message_on_the_deliver_subject_stops_nothing(
    bus, fast_store, config, stored
):
    """Messages without a $JS.ACK reply made the writer raise on the batch
    (no stream position), and it retried that batch for ever."""
    info = await bus.js.consumer_info(STREAM, "store")
    await bus.nc.publish(info.config.deliver_subject or "", b'{"forged": true}')
    await bus.nc.publish(info.config.deliver_subject or "", b"x", reply="_INBOX.forged")
    events = burst(bus, 40, "f")
    await bus.publish_many(events)
    await stored.count(40)
    assert fast_store.feed.foreign == 2
    assert (await stats(bus)).problems == []


async def test_jetstream_status_messages_are_not_events(bus, fast_store):
    """Idle heartbeats (status 100, no reply) are skipped, not stored or counted."""
    nc = fast_store.bus.nc
    assert fast_store.feed.sub is not None
    sid = fast_store.feed.sub.sid
    await nc._process_msg(sid, b"_INBOX.x", b"", b"", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n")
    assert fast_store._buffer == [] and fast_store.feed.foreign == 0


@contextlib.asynccontextmanager
async def losing_store(config, lost: set[int]) -> AsyncIterator[tuple[StoreService, list[str]]]:  # type: ignore[no-untyped-def]
    """A store whose connection loses its consumer's deliveries numbered
    ``lost`` (counted from 1 as they come) before its parser hands them over,
    as a connection that drops loses what the server had pushed into it; it
    checks the consumer only every minute. With it, a list of the appends
    that recorded a position past the log's last event (the stream holds only
    the test's events: stream position n is event n)."""
    store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
    store.check_s = 60.0
    await store.start()
    assert store.feed.sub is not None
    nc, sid = store.bus.nc, store.feed.sub.sid
    process, seen = nc._process_msg, 0

    async def losing(sid_, subject, reply, data, headers):  # type: ignore[no-untyped-def]
        nonlocal seen
        if sid_ == sid and reply.startswith(b"$JS.ACK"):
            seen += 1
            if seen in lost:
                return None
        return await process(sid_, subject, reply, data, headers)

    append, passed = store.eventlog.append, []

    async def appending(rows, position, dead=()):  # type: ignore[no-untyped-def]
        stored = await append(rows, position, dead)
        if position > store.eventlog.last_seq:
            passed.append(
                f"position {position} recorded with events up to {store.eventlog.last_seq}"
            )
        return stored

    nc._process_msg = losing
    store.eventlog.append = appending  # type: ignore[method-assign]
    try:
        yield store, passed
    finally:
        await store.stop()
        await store.bus.close()


async def test_deliveries_lost_with_a_connection_are_stored_all_the_same(bus, config, stored):
    """After nats-py's reconnect (same sid) delivery goes on after what the
    dropped connection lost: AckAll of a later message acked the lost ones,
    never stored. The feed sees the consumer sequence jump and the store
    repairs at once (not at its next check, a minute away)."""
    async with losing_store(config, lost={5, 6}) as (_, passed):
        events = burst(bus, 40, "g")
        await bus.publish_many(events)
        await stored.count(40, timeout=3)
        assert stored_ids(config.events_db) == [e.id for e in events]
        s = await stats(bus)
        assert (s.consumer_recreated, s.delivery_gaps, s.problems, passed) == (1, 1, [], [])


async def test_deliveries_lost_at_the_end_are_found_by_the_idle_heartbeat(bus, config, stored):
    """Nothing follows the lost deliveries: the idle heartbeat's
    Nats-Last-Consumer shows them (else they waited for ack_wait, 30 s)."""
    async with losing_store(config, lost={7, 8}) as (store, passed):
        events = burst(bus, 8, "h")
        await bus.publish_many(events)
        await stored.count(6, timeout=3)
        info = await bus.js.consumer_info(STREAM, "store")
        assert info.delivered.consumer_seq == 8 and store.feed.sub is not None
        heartbeat = (
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 8\r\nNats-Last-Stream: 8\r\n\r\n"
        )
        await store.bus.nc._process_msg(store.feed.sub.sid, b"_INBOX.x", b"", b"", heartbeat)
        await stored.count(8, timeout=3)
        assert stored_ids(config.events_db) == [e.id for e in events]
        assert (store.feed.gaps, passed) == (1, [])


def test_the_consumer_sequence_is_read_from_the_ack_subject_and_heartbeat():
    assert ack_sequences(b"$JS.ACK.GPUROUTE.store.1.4711.12.1796020093905562753.0") == (4711, 12)
    v2 = b"$JS.ACK.hub.ACCHASH.GPUROUTE.store.2.815.13.1796020093905562753.3.tok"
    assert ack_sequences(v2) == (815, 13)
    assert ack_sequences(b"$JS.ACK.S.c.1.4.x.1.0") is None
    assert last_consumer_sequence(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n") is None
    block = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 12\r\nNats-Last-Stream: 40\r\n\r\n"
    assert last_consumer_sequence(block) == 12


async def test_dead_letters_of_a_batch_are_republished_concurrently(bus, config):
    """One awaited JetStream ack per dead letter: 80,000 took minutes."""
    for i in range(200):
        body, headers = b'{"not": "an event"}', {"Nats-Msg-Id": f"d{i}"}
        await bus.js.publish("job.submitted", body, headers=headers)
    store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
    in_flight = most = 0
    publish_raw = store.bus.publish_raw

    async def counting(*args, **kw):  # type: ignore[no-untyped-def]
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await publish_raw(*args, **kw)
        finally:
            in_flight -= 1

    store.bus.publish_raw = counting  # type: ignore[method-assign]
    await store.start()
    try:
        await poll(lambda: len(dead_letters(config.events_db)) == 200)
        dlq = await bus.js.stream_info(DLQ_STREAM)
        assert dlq.state.messages == 200
        assert most > 1
    finally:
        await store.stop()
        await store.bus.close()


async def test_an_operator_acknowledges_a_reset_over_http(bus, fast_store, config, stored):
    """/health is 503 naming the reset until POST /api/store/acknowledge."""
    import aiohttp

    from services.gateway.service import GatewayService

    await bus.publish_many(burst(bus, 8, "a"))
    await stored.count(8)
    await bus.js.delete_stream(STREAM)
    await bus.ensure_streams()
    await bus.publish_many(burst(bus, 8, "b"))
    await stored.count(16)
    gateway = GatewayService(await Bus.connect(config.nats.url or "", source="gateway"), config)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(gateway.url + "/health") as r:
                body = await r.json()
            assert r.status == 503 and any("reset" in p for p in body["store"]["problems"])
            async with http.post(gateway.url + "/api/store/acknowledge") as r:
                body = await r.json()
            assert r.status == 200 and body["ok"] is True and body["problems"] == []
            async with http.get(gateway.url + "/health") as r:
                body = await r.json()
            assert body["store"]["problems"] == []
    finally:
        await gateway.stop()
        await gateway.bus.close()
