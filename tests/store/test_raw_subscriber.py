"""A subscriber written outside the project (plain nats-py, no gpuroute code)
sees events on their subjects and, once stored, on stored.<type>."""

from __future__ import annotations

import asyncio
import json

import nats

from tests.support import lifecycle


async def test_plain_nats_py_subscriber_sees_events_and_positions(bus, store, nats_server):
    nc = await nats.connect(nats_server.url)
    live: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()  # type: ignore[type-arg]
    stored: asyncio.Queue[dict] = asyncio.Queue()  # type: ignore[type-arg]

    async def on_live(msg):  # type: ignore[no-untyped-def]
        await live.put((msg.subject, json.loads(msg.data)))

    async def on_stored(msg):  # type: ignore[no-untyped-def]
        await stored.put(json.loads(msg.data))

    await nc.subscribe("job.>", cb=on_live)
    await nc.subscribe("stored.job.succeeded", cb=on_stored)
    await nc.flush()
    events = lifecycle(bus, "job-raw")
    await bus.publish_many(events)
    got = [await asyncio.wait_for(live.get(), 5) for _ in events]
    assert [s for s, _ in got] == [e.type for e in events]
    assert all(body["type"] == subject for subject, body in got)
    assert got[0][1]["data"]["spec"]["width"] == 1024
    done = await asyncio.wait_for(stored.get(), 5)
    assert done["seq"] == 4 and done["event"]["id"] == events[-1].id
    await nc.close()
