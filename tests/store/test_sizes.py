"""Events at the size limit, one byte under and one over, through every read
path: the store's read endpoint (in pages), ``follow()`` and the gateway's
``GET /api/events``; and 1,000 events of 2 KB asked for in one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from schemas import limits
from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.follow import follow
from tests.store.support import dead_letters, read, sized_event, stored_ids
from tests.support import poll


@pytest.fixture
async def gateway_url(config) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    b = await Bus.connect(config.nats.url, source="gateway")
    service = GatewayService(b, config)
    await service.start()
    yield service.url
    await service.stop()
    await b.close()


async def publish_raw(bus: Bus, bodies: list[tuple[str, bytes]]) -> None:
    for eid, body in bodies:
        await bus.js.publish("job.succeeded", body, headers={"Nats-Msg-Id": eid})


async def read_all(bus: Bus) -> tuple[list[int], int]:
    """Every stored position, read in pages of up to 1,000; and how many pages."""
    seqs: list[int] = []
    pages, after = 0, 0
    while True:
        page = await read(bus, after=after, limit=1000)
        pages += 1
        seqs += [e.seq for e in page.events]
        if not page.more:
            return seqs, pages
        after = seqs[-1]


async def follow_n(bus: Bus, n: int) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(20):
        async for raw in follow(bus, ["job.>"], after=0):
            seqs.append(msgspec.json.decode(raw)["seq"])
            if len(seqs) == n:
                return seqs
    raise AssertionError("follow ended")


async def get_events(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as s, s.get(url + "/api/events?after=0&limit=1000") as r:
        return r.status, await r.json()


async def test_events_at_the_limit_are_read_back_by_every_path(
    bus, store, config, gateway_url, stored
):
    at = sized_event(bus, limits.MAX_EVENT_BYTES)
    under = sized_event(bus, limits.MAX_EVENT_BYTES - 1)
    over = sized_event(bus, limits.MAX_EVENT_BYTES + 1)
    await publish_raw(bus, [at, under, over])
    await poll(lambda: dead_letters(config.events_db))
    await stored.count(2)
    assert stored_ids(config.events_db) == [at[0], under[0]]
    [(_, reason, body)] = dead_letters(config.events_db)
    assert body == over[1]
    assert f"{limits.MAX_EVENT_BYTES + 1} bytes, over the limit of {limits.MAX_EVENT_BYTES}" in (
        reason
    )
    page = await read(bus, limit=1000)
    assert [bytes(e.event) for e in page.events] == [at[1], under[1]] and not page.more
    assert await read_all(bus) == ([1, 2], 1)
    assert await follow_n(bus, 2) == [1, 2]
    status, body = await get_events(gateway_url)
    assert status == 200 and [e["seq"] for e in body["events"]] == [1, 2]


async def test_a_thousand_2kb_events_come_back_in_byte_bounded_pages(
    bus,
    store,
    config,
    gateway_url,
    stored,
):
    events = [sized_event(bus, 2048, key=f"job-{i}") for i in range(1000)]
    await publish_raw(bus, events)
    await stored.count(1000)
    page = await read(bus, limit=1000)
    assert page.more and 0 < len(page.events) < 1000
    assert sum(len(e.event) for e in page.events) <= limits.MAX_PAGE_BYTES
    seqs, pages = await read_all(bus)
    assert seqs == list(range(1, 1001)) and pages == 4
    assert await follow_n(bus, 1000) == list(range(1, 1001))
    status, body = await get_events(gateway_url)
    assert status == 200 and body["more"] is True
    assert [e["seq"] for e in body["events"]] == list(range(1, len(body["events"]) + 1))
