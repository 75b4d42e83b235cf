"""No message stops the store's writer, and every wrapper fits what it wraps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from schemas import encode_event, limits
from schemas.subjects import DLQ_STREAM
from services.runtime.bus import Bus
from services.runtime.config import Config, load_config
from services.store.ingest import DEAD_REASON, DEAD_SIZE, DEAD_TRUNCATED
from services.store.service import StoreService
from tests.store.support import dead_letters, nats_with, read, sized_event, stats, stored_ids
from tests.support import lifecycle, watch_stored

DEEP = b'{"type":"job.submitted","id":"d1","key":"k","ts":1,"source":"t","data":' + (
    b"[" * 1000 + b"]" * 1000 + b"}"
)


def _over_limit(bus: Bus) -> bytes:
    return sized_event(bus, limits.MAX_EVENT_BYTES + 1)[1]


def _wrong_type(bus: Bus) -> bytes:
    return encode_event(lifecycle(bus, "job-w")[1])  # a job.advised


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda bus: DEEP, "nested 1001 levels deep, over the limit of 64"),
        (lambda bus: b'{"type":"job.submitted","id":"\xff\xfe","key":"k"}', "invalid UTF-8"),
        (_over_limit, f"{limits.MAX_EVENT_BYTES + 1} bytes, over the limit of "
                      f"{limits.MAX_EVENT_BYTES}"),
        (_wrong_type, "does not match subject 'job.submitted'"),
    ],
    ids=["deep", "invalid-utf8", "over-size", "wrong-type"],
)  # fmt: skip
async def test_an_undecodable_message_is_dead_lettered_and_the_writer_goes_on(
    bus,
    store,
    config,
    payload,
    reason,
    stored,
):
    body = payload(bus)
    await bus.js.publish("job.submitted", body)
    good = lifecycle(bus, "job-good")[0]
    await bus.publish(good)
    await stored.first()
    assert stored_ids(config.events_db) == [good.id]
    [(subject, why, kept)] = dead_letters(config.events_db)
    assert (subject, kept) == ("job.submitted", body)
    assert reason in why
    later = lifecycle(bus, "job-later")[0]  # the writer is still alive
    await bus.publish(later)
    await stored.count(2)


async def test_garbage_near_max_payload_is_dead_lettered_cut_to_fit(bus, store, config, stored):
    garbage = b"\x00garbage" * ((bus.nc.max_payload - 50) // 8)
    dlq = await bus.js.subscribe("dlq.>", stream=DLQ_STREAM)
    await bus.js.publish("job.submitted", garbage)
    good = lifecycle(bus, "job-good")[0]
    await bus.publish(good)
    await stored.first(where=lambda e: e.id == good.id)
    assert stored_ids(config.events_db) == [good.id]
    dead = await dlq.next_msg(timeout=5)
    assert garbage.startswith(dead.data) and len(dead.data) > limits.MAX_EVENT_BYTES - 4096
    assert dead.headers[DEAD_SIZE] == str(len(garbage))
    assert dead.headers[DEAD_TRUNCATED] == "true"
    assert dead.headers[DEAD_REASON]
    assert dead_letters(config.events_db)[0][2] == garbage  # nothing lost
    assert store.bus.connected
    s = await stats(bus)
    assert (s.dead_letters, s.dlq_publish_failures, s.problems) == (1, 0, [])


@pytest.fixture
async def small_payload(tmp_path: Path) -> AsyncIterator[tuple[Config, Bus]]:
    """A nats-server whose max_payload is 64 KiB, and a bus on it."""
    with nats_with("max_payload: 65536\n", tmp_path / "nats64") as url:
        bus = await Bus.connect(url, source="test")
        await bus.ensure_streams()
        yield load_config(data_dir=str(tmp_path / "data"), nats__url=url, heartbeat_s=0.2), bus
        await bus.close()


async def test_a_failed_stored_broadcast_is_counted_never_retried(small_payload):
    config, bus = small_payload
    store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
    await store.start()
    try:
        # fits the server's max_payload, but its stored.* wrapper does not
        eid, body = sized_event(bus, 65536 - 10)
        after = lifecycle(bus, "job-after")[0]
        async with watch_stored(bus) as stored:
            await bus.js.publish("job.succeeded", body)
            await bus.publish(after)
            await stored.first(where=lambda e: e.id == after.id)
        assert stored_ids(config.events_db) == [eid, after.id]
        s = await stats(bus)
        assert s.broadcast_failures == 1 and s.problems == []
        page = await read(bus, after=1)  # (the first does not fit this server's replies)
        assert [e.seq for e in page.events] == [2]
    finally:
        await store.stop()
        await store.bus.close()
