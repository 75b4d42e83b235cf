"""The publishing helper against a server that restarts."""

from __future__ import annotations

import msgspec
import nats.errors

from schemas import decode_event
from services.runtime import bus as bus_module
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


async def stream_ids(bus, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The event ids in the stream, in stream order, with their headers' ids."""
    ids = []
    for seq in range(1, count + 1):
        msg = await bus.js.get_msg("GPUROUTE", seq)
        event = decode_event(msg.data or b"")
        assert (msg.headers or {}).get("Nats-Msg-Id") == event.id
        ids.append(event.id)
    return ids


async def test_a_burst_past_the_window_is_stored_once_in_order(bus, monkeypatch):
    """send_many hands a burst to the client as raw HPUB frames, flushed at each
    window: every event is stored once, in order, with its Nats-Msg-Id."""
    monkeypatch.setattr(bus_module, "PUBLISH_WINDOW", 8)
    monkeypatch.setattr(bus_module, "FRAMES_BYTES", 1500)  # handed over every ~3 events
    events = [e for i in range(10) for e in lifecycle(bus, f"job-{i}")]  # 40
    # an id frames do not write as it is goes through publish, in its place in line
    events[17] = msgspec.structs.replace(events[17], id="odd id 17")
    send, commands = bus.nc._send_command, []

    async def counting(cmd: bytes, priority: bool = False) -> None:
        commands.append(cmd.count(b"HPUB "))
        await send(cmd, priority)

    monkeypatch.setattr(bus.nc, "_send_command", counting)
    assert await bus.publish_many(events) == 40
    framed = [n for n in commands if n > 1]
    assert framed and max(framed) <= 4  # ~600-byte events: handed over every few
    assert await stream_ids(bus, 40) == [e.id for e in events]


async def test_frames_the_client_refuses_are_resent_in_order(bus, monkeypatch):
    """When the client refuses a burst's frames (its buffer), those events go
    back to the burst and are re-sent one by one, in order, once."""
    send = bus.nc._send_command
    refused = 0

    async def refuse_once(cmd: bytes, priority: bool = False) -> None:
        nonlocal refused
        if cmd.startswith(b"HPUB") and not refused:
            refused += 1
            raise nats.errors.OutboundBufferLimitError
        await send(cmd, priority)

    monkeypatch.setattr(bus.nc, "_send_command", refuse_once)
    events = lifecycle(bus, "job-1") + lifecycle(bus, "job-2")
    assert await bus.publish_many(events) == 8
    assert refused == 1
    assert await stream_ids(bus, 8) == [e.id for e in events]
