"""The publishing helper against a server that restarts."""

from __future__ import annotations

from services.runtime.natsserver import EmbeddedNats
from tests.support import lifecycle, wait_for


async def test_reconnects_after_a_server_restart_and_keeps_acked_events(bus, nats_server):
    before = lifecycle(bus, "job-1")
    await bus.publish_many(before)
    port, store_dir = nats_server.port, nats_server.store_dir
    nats_server.stop()
    restarted = EmbeddedNats(store_dir, port=port)
    restarted.start()
    try:
        await wait_for(lambda: bus.connected, timeout=10)
        after = lifecycle(bus, "job-2")
        await bus.publish_many(after)
        info = await bus.js.stream_info("GPUROUTE")
        assert info.state.messages == 8
    finally:
        restarted.stop()


async def test_republishing_the_same_event_is_dropped_by_jetstream(bus):
    event = lifecycle(bus, "job-1")[0]
    first = await bus.publish(event)
    again = await bus.publish(event)
    assert first == again == 1
    info = await bus.js.stream_info("GPUROUTE")
    assert info.state.messages == 1
