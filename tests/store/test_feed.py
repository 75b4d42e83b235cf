"""The store notices a lost consumer and a reset stream, repairs both, and
stores every acknowledged event."""

from __future__ import annotations

import shutil
import sqlite3

from schemas.subjects import STORE_ACKNOWLEDGE, STREAM
from schemas.system import StoreStats
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError
from services.runtime.natsserver import EmbeddedNats
from services.store.service import StoreService
from tests.store.support import stats, stored_ids
from tests.support import lifecycle, wait_for


def burst(bus: Bus, n: int, tag: str) -> list:  # type: ignore[type-arg]
    return [e for j in range(n // 4) for e in lifecycle(bus, f"job-{tag}-{j}")]


async def streams_ready(bus: Bus) -> bool:
    """Once the client has reconnected to the new server, its streams exist."""
    try:
        await bus.ensure_streams()
        return True
    except GpurouteError:
        return False


async def test_a_deleted_consumer_is_recreated_at_the_log_position(bus, fast_store, config):
    first = burst(bus, 40, "a")
    await bus.publish_many(first)
    await wait_for(lambda: len(stored_ids(config.events_db)) == 40)
    await bus.js.delete_consumer(STREAM, "store")
    later = burst(bus, 40, "b")
    await bus.publish_many(later)
    await wait_for(lambda: len(stored_ids(config.events_db)) == 80)
    assert stored_ids(config.events_db) == [e.id for e in first + later]
    s = await stats(bus)
    assert (s.consumer_recreated, s.stream_resets, s.problems) == (1, 0, [])


async def test_a_deleted_stream_is_a_reset_reported_until_acknowledged(bus, fast_store, config):
    first = burst(bus, 40, "a")
    await bus.publish_many(first)
    await wait_for(lambda: len(stored_ids(config.events_db)) == 40)
    await bus.js.delete_stream(STREAM)
    await bus.ensure_streams()  # a new stream, numbered from 1 again
    later = burst(bus, 400, "b")
    await bus.publish_many(later)
    await wait_for(lambda: len(stored_ids(config.events_db)) == 440)
    assert stored_ids(config.events_db) == [e.id for e in first + later]
    s = await stats(bus)
    assert s.stream_resets == 1 and s.stream_seq == 400
    assert len(s.problems) == 1 and "reset" in s.problems[0]
    s = await bus.call(STORE_ACKNOWLEDGE, {}, StoreStats)
    assert s.problems == []


async def test_a_replaced_jetstream_directory_loses_no_event(bus, fast_store, config, nats_server):
    port, store_dir = nats_server.port, nats_server.store_dir
    expected: list[str] = []
    server = nats_server
    try:
        for attempt in range(3):
            events = burst(bus, 200, f"r{attempt}")
            await bus.publish_many(events)
            expected += [e.id for e in events]
            n = len(expected)
            await wait_for(lambda n=n: len(stored_ids(config.events_db)) == n, timeout=20)
            server.stop()
            shutil.rmtree(store_dir / "jetstream")
            server = EmbeddedNats(store_dir, port=port)
            server.start()
            await wait_for(lambda: streams_ready(bus), timeout=20)
        events = burst(bus, 200, "last")
        await bus.publish_many(events)
        expected += [e.id for e in events]
        await wait_for(lambda: len(stored_ids(config.events_db)) == len(expected), timeout=20)
        assert stored_ids(config.events_db) == expected
        s = await stats(bus)
        assert s.stream_resets == 3
    finally:
        if server is not nats_server:
            server.stop()


async def test_a_reset_while_stopped_is_found_at_start_also_in_an_old_log(bus, config):
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
        await wait_for(lambda: len(stored_ids(config.events_db)) == 20)
        assert stored_ids(config.events_db) == [e.id for e in events]
        s = await stats(bus)
        assert (s.stream_resets, s.dead_letters, len(s.problems)) == (1, 1, 1)
    finally:
        await store.stop()
        await store.bus.close()
