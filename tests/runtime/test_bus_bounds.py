"""Bus: event size bounds at every publish path, bounded reply decoding, and
a connection that the server closes is reported as lost."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from schemas import encode_event, limits
from schemas.advisor import JobAdvised
from schemas.system import StoreStats
from services.runtime.bus import Bus
from services.runtime.errors import BusError, ServiceCallError
from tests.support import lifecycle, poll


def sized(bus: Bus, size: int):  # type: ignore[no-untyped-def]
    """A job.advised event whose encoding is exactly ``size`` bytes."""
    event = bus.event(JobAdvised(target="local", rule="r", reason=""), key="job-big")
    base = len(encode_event(event))
    data = JobAdvised(target="local", rule="r", reason="x" * (size - base))
    event = msgspec.structs.replace(event, data=data)
    assert len(encode_event(event)) == size
    return event


async def stored_messages(bus: Bus) -> int:
    info = await bus.js.stream_info("GPUROUTE")
    return int(info.state.messages)


async def test_an_event_at_the_limit_is_published_one_byte_over_is_refused(bus):
    assert await bus.publish(sized(bus, limits.MAX_EVENT_BYTES)) == 1
    over = sized(bus, limits.MAX_EVENT_BYTES + 1)
    with pytest.raises(BusError) as e:
        await bus.publish(over)
    text = str(e.value)
    assert "job.advised" in text and str(limits.MAX_EVENT_BYTES + 1) in text
    assert f"limit of {limits.MAX_EVENT_BYTES} bytes" in text
    assert await stored_messages(bus) == 1


async def test_publish_many_refuses_the_whole_burst_before_sending_any(bus):
    small = lifecycle(bus, "job-1")
    burst = [*small[:2], sized(bus, limits.MAX_EVENT_BYTES + 1), *small[2:]]
    with pytest.raises(BusError, match=r"job\.advised .* over the limit"):
        await bus.publish_many(burst)
    assert await stored_messages(bus) == 0
    assert await bus.publish_many(small) == 4  # the bus still works


async def test_emit_refuses_an_oversize_event(bus):
    with pytest.raises(BusError, match="over the limit"):
        await bus.emit(JobAdvised(target="local", rule="r", reason="x" * limits.MAX_EVENT_BYTES),
                       key="k")  # fmt: skip
    assert await stored_messages(bus) == 0


async def test_publish_raw_is_bounded_with_its_headers(bus):
    await bus.publish_raw("dlq.job.submitted", b"x" * 100, {"Gpuroute-Dead-Reason": "bad"})
    with pytest.raises(BusError, match=r"dlq\.job\.submitted .* over the limit"):
        await bus.publish_raw("dlq.job.submitted", b"x" * limits.MAX_EVENT_BYTES, {"A": "b"})


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested 1000 levels deep"),
        (b'{"path": "\xff"}', "invalid UTF-8"),
        (b"not json", "malformed reply"),
        (b'{"count": "x"}', "Expected `int`"),
    ],
)
async def test_call_decodes_replies_through_the_limits(bus, reply, problem):
    async def answer(msg):  # type: ignore[no-untyped-def]
        await msg.respond(reply)

    await bus.nc.subscribe("test.reply", cb=answer)
    with pytest.raises(ServiceCallError) as e:
        await bus.call("test.reply", {}, StoreStats, timeout=2)
    assert e.value.code == 502 and problem in e.value.description, e.value


async def test_a_connection_the_server_closes_is_lost_a_closed_one_is_not(nats_server):
    victim = await Bus.connect(nats_server.url, source="victim")
    await victim.nc.subscribe("x" * 5000)  # over the server's control-line limit: it closes us
    await asyncio.wait_for(victim.wait_lost(), 10)
    assert victim.lost
    await victim.close()

    fine = await Bus.connect(nats_server.url, source="fine")
    await fine.close()
    await poll(lambda: fine.nc.is_closed)
    assert not fine.lost
