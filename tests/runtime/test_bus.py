"""The publishing helper against a server that restarts."""

from __future__ import annotations

from tests.support import lifecycle, restart_bus


async def test_reconnects_after_a_server_restart_and_keeps_acked_events(nats_server):
    """The server restarts as the same fixture (port and store dir kept), so it
    is still up when the bus closes (a drain against no server waits 5 s)."""
    async with restart_bus(nats_server.url) as bus:
        before = lifecycle(bus, "job-1")
        await bus.publish_many(before)
        nats_server.stop()
        nats_server.start()
        after = lifecycle(bus, "job-2")
        await bus.publish_many(after)  # re-sent until acked, once the client is back
        info = await bus.js.stream_info("GPUROUTE")
        assert info.state.messages == 8


async def test_republishing_the_same_event_is_dropped_by_jetstream(bus):
    event = lifecycle(bus, "job-1")[0]
    first = await bus.publish(event)
    again = await bus.publish(event)
    assert first == again == 1
    info = await bus.js.stream_info("GPUROUTE")
    assert info.state.messages == 1
