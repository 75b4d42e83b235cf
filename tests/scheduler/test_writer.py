"""The scheduler's event writer: bursts on a real NATS, in order, one refusal fails one event."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from schemas import decode_event, limits
from schemas.scheduler import JobProgress
from schemas.subjects import STREAM
from services.runtime.bus import Bus
from services.runtime.errors import BusError
from services.scheduler.writer import Writer

N = 60


async def test_events_go_out_in_order_in_bursts_and_an_oversized_one_fails_alone(
    bus: Bus,
) -> None:
    writer = Writer(bus)
    task = asyncio.create_task(writer.run())
    seen: list[str] = []
    all_seen = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        seen.append(decode_event(msg.data).id)
        if len(seen) == N:
            all_seen.set()

    await bus.nc.subscribe("job.progress", cb=on_event)
    await bus.flush()
    try:
        events = [bus.event(JobProgress(attempt=1, line=str(i)), key=f"job-{i % 3}")
                  for i in range(N)]  # fmt: skip
        big = bus.event(JobProgress(attempt=1, line="x" * limits.MAX_EVENT_BYTES), key="big")
        futures = [writer.send(e) for e in events[:10]]
        futures.append(writer.send(big))
        futures += [writer.send(e) for e in events[10:]]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(results[10], BusError) and "over the limit" in str(results[10])
        assert results[:10] + results[11:] == [None] * N  # acknowledged
        await asyncio.wait_for(all_seen.wait(), 5)
        assert seen == [e.id for e in events]  # in the order they were queued
        assert writer.bursts < N  # batched, not one request each
        # a re-sent id is stored once (JetStream's duplicate window)
        await writer.publish(events[0])
        info = await bus.js.stream_info(STREAM)
        assert info.state.messages == N
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
