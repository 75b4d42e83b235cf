"""The store service against a real nats-server and a real SQLite file."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from schemas import decode_event, encode_event
from schemas.subjects import DLQ_STREAM, STORE_READ, STORE_STATS
from schemas.system import StoreReadRequest, StoreStats
from services.runtime.errors import ServiceCallError
from tests.support import lifecycle, restart_bus, watch_stored


def rows(db) -> list[tuple[int, str, str]]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT seq, id, type FROM events ORDER BY seq").fetchall()


async def stats(bus) -> StoreStats:  # type: ignore[no-untyped-def]
    return await bus.call(STORE_STATS, {}, StoreStats)


async def test_events_are_stored_once_in_order(bus, store, config, stored):
    events = [e for j in range(20) for e in lifecycle(bus, f"job-{j}")]
    await bus.publish_many(events)
    await stored.count(80)
    table = rows(config.events_db)
    assert [r[0] for r in table] == list(range(1, 81))
    assert [r[1] for r in table] == [e.id for e in events]
    assert [r[2] for r in table] == [e.type for e in events]


async def test_stored_body_is_the_published_event(bus, store, config, stored):
    event = lifecycle(bus, "job-x")[0]
    await bus.publish(event)
    await stored.first()
    with sqlite3.connect(config.events_db) as conn:
        (body,) = conn.execute("SELECT body FROM events").fetchone()
    assert body == encode_event(event)
    assert decode_event(body) == event


async def test_duplicate_ids_are_stored_once(bus, store, config, stored):
    event = lifecycle(bus, "job-dup")[0]
    await bus.publish(event)
    # past JetStream's duplicate window too: a raw publish without Nats-Msg-Id
    await bus.js.publish(event.type, encode_event(event))
    marker = lifecycle(bus, "job-after")[0]
    await bus.publish(marker)
    await stored.first(where=lambda e: e.id == marker.id)
    assert [r[1] for r in rows(config.events_db)] == [event.id, marker.id]


async def test_read_endpoint_filters_and_pages(bus, store, stored):
    events = [e for j in range(5) for e in lifecycle(bus, f"job-{j}")]
    await bus.publish_many(events)
    await stored.count(20)

    async def read(**kw):  # type: ignore[no-untyped-def]
        raw = await bus.call_raw(STORE_READ, msgspec.json.encode(StoreReadRequest(**kw)))
        return msgspec.json.decode(raw)

    page = await read(after=0, limit=7)
    assert [i["seq"] for i in page["events"]] == list(range(1, 8))
    assert page["last_seq"] == 20
    page = await read(after=7, limit=100)
    assert [i["seq"] for i in page["events"]] == list(range(8, 21))
    page = await read(type="job.started")
    assert [i["event"]["key"] for i in page["events"]] == [f"job-{j}" for j in range(5)]
    page = await read(type="job.", key="job-3")
    assert [i["event"]["type"] for i in page["events"]] == [
        "job.submitted", "job.advised", "job.started", "job.succeeded"
    ]  # fmt: skip
    page = await read(limit=3, last=True)
    assert [i["seq"] for i in page["events"]] == [18, 19, 20]
    page = await read(types=["job.started", "job.succ"], key="job-1")
    assert [i["event"]["type"] for i in page["events"]] == ["job.started", "job.succeeded"]
    page = await read(type="job.advised", types=["job.started"], limit=4)
    assert [i["seq"] for i in page["events"]] == [2, 3, 6, 7]


async def test_read_endpoint_rejects_bad_requests_and_survives(bus, store):
    with pytest.raises(ServiceCallError) as e:
        await bus.call_raw(STORE_READ, b'{"limit": "many"}')
    assert e.value.code == 400
    assert "$.limit" in e.value.description
    with pytest.raises(ServiceCallError) as e:
        await bus.call_raw(STORE_READ, b'{"limt": 5}')
    assert e.value.code == 400 and "limt" in e.value.description
    with pytest.raises(ServiceCallError) as e:
        await bus.call_raw(STORE_READ, b"\xff not json")
    assert e.value.code == 400
    assert (await stats(bus)).count == 0  # still answering


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("job.submitted", b"garbage{", "malformed"),
        # valid JSON, but the type tag says another event than the subject
        ("job.started", None, "does not match subject"),
        # a job.submitted missing its required `key`
        ("job.submitted", b'{"type":"job.submitted","id":"x1","ts":1,"source":"t",'
                          b'"data":{"spec":{}}}', "missing required field `key`"),
        # unknown event type on a stream subject
        ("job.exploded", b'{"type":"job.exploded","id":"x2","key":"k","ts":1,"source":"t",'
                         b'"data":{}}', "Invalid value 'job.exploded'"),
    ],
)  # fmt: skip
async def test_malformed_messages_go_to_dead_letters(
    bus, store, config, stored, subject, payload, reason
):
    if payload is None:
        payload = encode_event(lifecycle(bus, "job-wrong")[0])  # a job.submitted
    dlq = await bus.js.subscribe("dlq.>", stream=DLQ_STREAM)
    await bus.js.publish(subject, payload)
    good = lifecycle(bus, "job-good")[0]
    await bus.publish(good)  # the store goes on after the bad message
    await stored.first()
    assert [r[1] for r in rows(config.events_db)] == [good.id]
    dead = await dlq.next_msg(timeout=5)
    assert dead.subject == "dlq." + subject
    assert dead.data == payload
    assert reason in dead.headers["Gpuroute-Dead-Reason"]
    assert (await stats(bus)).dead_letters == 1
    with sqlite3.connect(config.events_db) as conn:
        assert conn.execute("SELECT subject FROM dead_letters").fetchall() == [(subject,)]


async def test_stats_report_count_position_and_size(bus, store, config, stored):
    await bus.publish_many(lifecycle(bus, "job-s"))
    await stored.count(4)
    s = await stats(bus)
    assert (s.count, s.last_seq, s.stream_seq) == (4, 4, 4)
    assert s.file_bytes > 0
    assert s.path == str(config.events_db)


async def test_store_keeps_ingesting_after_the_server_restarts(store, config, nats_server):
    """The server restarts as the same fixture (port and store dir kept), so it
    outlives the store's connection, whose drain on close would wait for it."""
    async with restart_bus(nats_server.url) as bus, watch_stored(bus) as stored:
        first = lifecycle(bus, "job-before")
        await bus.publish_many(first)
        await stored.count(4)
        nats_server.stop()
        nats_server.start()
        later = lifecycle(bus, "job-after")
        await bus.publish_many(later)  # re-sent until acked: the client may not know yet
        await stored.count(8, timeout=20)
        assert [r[1] for r in rows(config.events_db)] == [e.id for e in first + later]
