"""The gateway on a real socket, in front of a real store and nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from tests.support import lifecycle, poll


@pytest.fixture
async def gateway(config) -> AsyncIterator[GatewayService]:  # type: ignore[no-untyped-def]
    b = await Bus.connect(config.nats.url, source="gateway")
    service = GatewayService(b, config)
    await service.start()
    yield service
    await service.stop()
    await b.close()


@pytest.fixture
async def http(gateway) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session:
        yield session, gateway.url


async def get(http, path: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def,type-arg]
    session, base = http
    async with session.get(base + path) as r:
        return r.status, await r.json()


async def test_health_reports_nats_store_and_heartbeats(store, http):
    async def both_beating() -> bool:
        _, body = await get(http, "/health")
        return {"store", "gateway"} <= set(body["services"])

    await poll(both_beating, timeout=5)  # heartbeats, folded by the gateway: no event
    status, body = await get(http, "/health")
    assert status == 200 and body["ok"] is True
    assert body["nats"]["connected"] is True
    assert body["store"]["ok"] is True and body["store"]["last_seq"] == 0
    beat = body["services"]["store"][0]
    assert beat["pid"] > 0 and beat["version"] and beat["stale"] is False


async def test_health_is_503_without_a_store(http):
    status, body = await get(http, "/health")
    assert status == 503
    assert body["ok"] is False and body["store"]["ok"] is False
    assert "no service is answering" in body["store"]["error"]


async def test_events_route_filters_like_the_store(store, bus, http, stored):
    await bus.publish_many([e for j in range(3) for e in lifecycle(bus, f"job-{j}")])
    await stored.count(12)
    status, body = await get(http, "/api/events?after=2&limit=3")
    assert status == 200 and body["ok"] is True
    assert [i["seq"] for i in body["events"]] == [3, 4, 5]
    _, body = await get(http, "/api/events?type=job.succeeded&key=job-1")
    assert [(i["event"]["type"], i["event"]["key"]) for i in body["events"]] == [
        ("job.succeeded", "job-1")
    ]


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/api/events?after=abc", 400, "$.after"),
        ("/api/events?limit=0", 400, "$.limit"),
        ("/api/events?limit=5000", 400, "$.limit"),
        ("/api/events?colour=red", 400, "colour"),
        ("/api/modder/hooks?limit=nope", 400, "$.limit"),
        ("/api/modder/hooks?limit=0", 400, "Expected `int` >= 1 - at `$.limit`"),
        ("/api/modder/hooks?topic=job..x", 400, "topic"),
        ("/no/such/route", 404, "no route"),
    ],
)
async def test_bad_requests_are_json_4xx(store, http, path, status, needle):
    got, body = await get(http, path)
    assert got == status
    assert body["ok"] is False and needle in body["error"]


async def test_wrong_method_is_json_405(store, http):
    session, base = http
    async with session.post(base + "/api/events") as r:
        assert r.status == 405
        assert (await r.json())["ok"] is False


async def test_modder_hooks_return_recent_history_for_a_topic(store, bus, http, stored):
    await bus.publish_many([e for j in range(4) for e in lifecycle(bus, f"job-{j}")])
    await stored.count(16)
    _, body = await get(http, "/api/modder/hooks?topic=job.started&limit=2")
    assert [i["event"]["key"] for i in body["events"]] == ["job-2", "job-3"]
    _, body = await get(http, "/api/modder/hooks?topic=job&limit=3")
    assert body["topic"] == "job.>"
    assert [i["seq"] for i in body["events"]] == [14, 15, 16]
    _, body = await get(http, "/api/modder/hooks?topic=*.succeeded")
    assert len(body["events"]) == 4


async def test_websocket_sends_history_then_live_without_gap_or_duplicate(store, bus, http, stored):
    first = [e for j in range(30) for e in lifecycle(bus, f"job-a{j}")]
    await bus.publish_many(first)
    await stored.count(120)
    session, base = http
    later = [e for j in range(30) for e in lifecycle(bus, f"job-b{j}")]
    async with session.ws_connect(base + "/api/modder/hooks/ws") as ws:
        await ws.send_json({"subjects": ["job.>"], "after": 10})
        # publish while the history is being sent: the seam is exercised
        publishing = asyncio.create_task(_publish_slowly(bus, later))
        seqs, ids = [], []
        while len(seqs) < 230:
            msg = await ws.receive_json(timeout=10)
            seqs.append(msg["seq"])
            ids.append(msg["event"]["id"])
        await publishing
    assert seqs == list(range(11, 241))
    assert ids == [e.id for e in first[10:]] + [e.id for e in later]


async def _publish_slowly(bus, events) -> None:  # type: ignore[no-untyped-def]
    for i in range(0, len(events), 8):
        await bus.publish_many(events[i : i + 8])


async def test_websocket_filters_by_pattern_and_goes_live(store, bus, http):
    session, base = http
    url = base + "/api/modder/hooks/ws?subjects=job.failed,job.started&after=0"
    async with session.ws_connect(url) as ws:
        await bus.publish_many(lifecycle(bus, "job-a"))
        msg = await ws.receive_json(timeout=10)
        assert (msg["event"]["type"], msg["event"]["key"]) == ("job.started", "job-a")
        # job-a arrived, so the live subscription exists: job-b can only come live
        await bus.publish_many(lifecycle(bus, "job-b"))
        msg = await ws.receive_json(timeout=10)
        assert (msg["event"]["type"], msg["event"]["key"]) == ("job.started", "job-b")
        assert msg["seq"] == 7


async def test_websocket_rejects_a_bad_subscription(store, http):
    session, base = http
    async with session.ws_connect(base + "/api/modder/hooks/ws") as ws:
        await ws.send_str('{"subjects": ["job.>.x"]}')
        msg = await ws.receive_json(timeout=5)
        assert msg["ok"] is False and "invalid subject pattern" in msg["error"]
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
