"""The follower (services/runtime/follower.py) against a real nats-server and store:
snapshots loaded, refused and saved; a prompt 503 while loading; services start
without the store; commands read their own writes; skipped events counted."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import msgspec
import pytest

from schemas.advisor import QueueDepthChanged
from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from services.adapters.service import AdaptersService
from services.advisor.projection import AdvisorProjection
from services.advisor.service import AdvisorService
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.errors import ServiceCallError
from services.runtime.follower import Follower
from services.runtime.snapshots import Snapshots
from services.store.service import StoreService
from tests.support import watch_stored

log = logging.getLogger("test.follower")


async def _follower(config: Config, bus: Bus) -> Follower[object]:
    return Follower(bus, AdvisorProjection(), ["queue.depth.changed", "flags.changed"],  # type: ignore[arg-type]
                    log=log, snapshots=Snapshots(config.data_path / "snapshots"))  # fmt: skip


async def _run(follower: Follower[object]) -> asyncio.Task[None]:
    task = asyncio.create_task(follower.run())
    await asyncio.wait_for(follower.ready.wait(), 10)
    return task


async def _stop(follower: Follower[object], task: asyncio.Task[None]) -> None:
    while not task.done():  # a cancel racing a NATS reply can be swallowed (Service.stop)
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    await follower.close()


async def _depths(bus: Bus, n: int, start: int = 0, store: StoreService | None = None) -> None:
    """Publish ``n`` queue depths; with ``store``, return once it stored them."""
    async with watch_stored(bus) as stored:
        await bus.publish_many([bus.event(QueueDepthChanged(depth=start + i), key="remote")
                                for i in range(n)])  # fmt: skip
        if store is not None:
            await stored.count(n)


async def test_a_restart_loads_the_snapshot_and_reads_only_the_tail(store, bus, config):
    await _depths(bus, 50, store=store)
    first = await _follower(config, bus)
    task = await _run(first)
    assert (first.position, first.restored_from) == (50, None)
    await _stop(first, task)  # saves on a clean stop
    await _depths(bus, 5, start=100)
    second = await _follower(config, bus)
    task = await _run(second)
    try:
        assert await second.wait_position(55, 10)
        assert second.restored_from == 50
        assert second.state.remote_queue_depth == 104  # type: ignore[attr-defined]
        assert second.projector.hash() == first_rebuild_hash(first, 55)
    finally:
        await _stop(second, task)


def first_rebuild_hash(follower: Follower[object], position: int) -> str:
    """The hash a rebuild from zero gives (events 1..position), from the store file."""
    from services.runtime.projection import Projector
    from services.store.eventlog import iter_events

    projector = Projector(AdvisorProjection())
    db = Path(follower.snapshots.directory).parent / "events.db"  # type: ignore[union-attr]
    projector.fold_raw(r for r in iter_events(db, position) if r[1] == "queue.depth.changed")
    return projector.hash()


@pytest.mark.parametrize("damage", ["truncate", "flip", "version", "other log"])
async def test_a_snapshot_that_cannot_be_trusted_rebuilds_from_zero(
    store, bus, config, damage, caplog
):
    await _depths(bus, 20, store=store)
    first = await _follower(config, bus)
    await _stop(first, await _run(first))
    path = first.snapshots.path("advisor", AdvisorProjection.version)  # type: ignore[union-attr]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-7])
    elif damage == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    elif damage == "version":
        path.rename(path.with_name("advisor.v999.snapshot"))
    else:  # the same position, but another event there: a replaced events.db
        head, _, body = data.partition(b"\n")
        path.write_bytes(head.replace(b'"event_id":"', b'"event_id":"X') + b"\n" + body)
    second = await _follower(config, bus)
    task = await _run(second)
    try:
        assert (second.restored_from, second.position) == (None, 20)
        assert second.state.remote_queue_depth == 19  # type: ignore[attr-defined]
    finally:
        await _stop(second, task)


async def test_the_advisor_starts_without_a_store_and_answers_503_at_once(bus, config):
    """No store: start returns at once; a request gets a 503 saying it is loading,
    within the grace, not a timeout; once the store runs it answers."""
    advisor = AdvisorService(await Bus.connect(config.nats.url or "", source="advisor"), config)
    t0 = time.monotonic()
    await advisor.start()
    store = None
    try:
        assert time.monotonic() - t0 < 2.0
        t0 = time.monotonic()
        with pytest.raises(ServiceCallError) as e:
            await bus.call_raw("gpuroute.providers.list", b"{}", timeout=5.0)
        assert e.value.code == 503 and "still loading" in e.value.description
        assert time.monotonic() - t0 < 2.0
        store = StoreService(await Bus.connect(config.nats.url or "", source="store"), config)
        await store.start()
        await asyncio.wait_for(advisor.ready.wait(), 15)
        listed = msgspec.json.decode(await bus.call_raw("gpuroute.providers.list", b"{}"))
        assert listed["providers"]  # seeded once loaded
    finally:
        await advisor.stop()
        await advisor.bus.close()
        if store is not None:
            await store.stop()
            await store.bus.close()


async def test_commands_read_their_own_writes(store, bus, config):
    follower = await _follower(config, bus)
    task = await _run(follower)
    try:
        events = [bus.event(QueueDepthChanged(depth=7), key="remote")]
        assert await follower.publish_and_wait(events, 5.0) is True
        assert follower.state.remote_queue_depth == 7  # type: ignore[attr-defined]
    finally:
        await _stop(follower, task)


async def test_skipped_messages_are_counted_per_follower(store, bus, config):
    one, two = await _follower(config, bus), await _follower(config, bus)
    tasks = [await _run(one), await _run(two)]
    try:
        await bus.nc.publish("stored.queue.depth.changed", b"not json")
        await _depths(bus, 1)
        assert await one.wait_position(1, 10) and await two.wait_position(1, 10)
        assert (one.skipped, two.skipped) == (1, 1)
    finally:
        await _stop(one, tasks[0])
        await _stop(two, tasks[1])


async def test_the_adapters_restore_flags_and_jobs_from_a_snapshot(store, bus, config):
    await bus.emit(FlagsChanged(flags={ENABLE_PUBLIC_GPU_ADAPTERS: True}), key="flags")
    first = AdaptersService(await Bus.connect(config.nats.url or "", source="adapters"), config)
    await first.start()
    await asyncio.wait_for(first.follower.ready.wait(), 10)
    assert (first.live_calls_enabled, first.flags_position) == (True, 1)
    await first.stop()
    await first.bus.close()
    second = AdaptersService(await Bus.connect(config.nats.url or "", source="adapters"), config)
    await second.start()
    try:
        await asyncio.wait_for(second.follower.ready.wait(), 10)
        assert second.follower.restored_from == 1
        assert (second.live_calls_enabled, second.flags_position) == (True, 1)
    finally:
        await second.stop()
        await second.bus.close()
