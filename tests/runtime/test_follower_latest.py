"""Latest wins (services/runtime/follower.py): a start that folds only the newest
telemetry sample its node takes gives the state, byte for byte, that a fold of
every event gives; from zero, from a snapshot, and when the newest page holds
none of its node's samples (then it folds everything)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from schemas import Event, make_event
from schemas.advisor import QueueDepthChanged
from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from schemas.telemetry import HostStats, TelemetrySample
from services.advisor.projection import AdvisorProjection
from services.advisor.state import FOLLOWED, AdvisorState
from services.budget.fold import BudgetProjection
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.follower import Follower, LatestWins
from services.runtime.projection import Projector
from services.runtime.snapshots import Snapshots
from services.store.eventlog import iter_events
from services.store.service import StoreService
from tests.support import poll, watch_stored

log = logging.getLogger("test.follower.latest")


def _sample(bus: Bus, node: str | None, i: int) -> Event:
    eid = bus.ids.new()
    data = TelemetrySample(sample_id=eid, ts=1000.0 + i, node=node,
                           host=HostStats(cpu_percent=float(i % 100)))  # fmt: skip
    return make_event(data, id=eid, key=node or "old-host", ts=1000.0 + i, source="test")


async def _publish(bus: Bus, store: StoreService, events: list[Event]) -> None:
    async with watch_stored(bus) as stored:
        await bus.publish_many(events)
        await stored.count(len(events))


def _mixed(bus: Bus, nodes: list[str | None], start: int = 0) -> list[Event]:
    """Samples of ``nodes`` in turn, with a flag or queue depth every 7th event."""
    events = []
    for i in range(start, start + 60):
        if i % 7 == 3:
            flags = {ENABLE_PUBLIC_GPU_ADAPTERS: i % 2 == 0}
            events.append(bus.event(FlagsChanged(flags=flags), key="flags"))
        elif i % 7 == 5:
            events.append(bus.event(QueueDepthChanged(depth=i), key="remote"))
        else:
            events.append(_sample(bus, nodes[i % len(nodes)], i))
    return events


def _full_fold(config: Config, node: str, position: int) -> Projector[AdvisorState]:
    """Every event up to ``position`` folded one by one: the state to match."""
    projector = Projector(AdvisorProjection(node=node))
    projector.fold_raw(iter_events(Path(config.events_db), position))
    return projector


async def _load(
    bus: Bus, config: Config, node: str, page: int = 1000
) -> tuple[Follower[AdvisorState], list[str], asyncio.Task[None]]:
    folded: list[str] = []
    follower = Follower(
        bus, AdvisorProjection(node=node), FOLLOWED, log=log,
        snapshots=Snapshots(config.data_path / "snapshots"),
        on_apply=lambda seq, event: folded.append(event.type),
    )  # fmt: skip
    follower.latest_page = page
    task = asyncio.create_task(follower.run())
    await asyncio.wait_for(follower.ready.wait(), 10)
    return follower, folded, task


async def _stop(follower: Follower[AdvisorState], task: asyncio.Task[None]) -> None:
    # nats-py: a flush() cancelled before its PONG leaves a cancelled future that the
    # PONG then fails on, killing the shared connection's read loop; so stop only once
    # the live loop has subscribed and its flush has returned
    nc = follower.bus.nc
    await poll(lambda: not nc._pongs and any(
        s.subject == "stored.telemetry.sampled" for s in nc._subs.values()))  # fmt: skip
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    await follower.close()


def test_the_advisor_takes_exactly_the_samples_its_fold_applies(bus):
    for node in ("a", None):
        projection = AdvisorProjection(node=node)
        assert isinstance(projection, LatestWins)
        state = projection.initial()
        for sample_node in ("a", "b", None):
            event = _sample(bus, sample_node, 1)
            applied = projection.apply(state, event) is not state
            assert projection.takes_latest(event) == applied, (node, sample_node)


def test_the_budget_takes_exactly_the_samples_its_fold_applies(bus):
    for node in ("a", None):
        projection = BudgetProjection(node=node)
        assert isinstance(projection, LatestWins)
        for sample_node in ("a", "b", None):
            state = projection.initial()
            event = _sample(bus, sample_node, 1)
            applied = projection.apply(state, event).sample is not None
            assert projection.takes_latest(event) == applied, (node, sample_node)


async def test_a_start_folds_one_sample_and_matches_a_full_fold(store, bus, config):
    await _publish(bus, store, _mixed(bus, ["a", "b", None, "b"]))
    follower, folded, task = await _load(bus, config, "a")
    try:
        head = store.eventlog.last_seq
        assert follower.position == head
        assert folded.count("telemetry.sampled") == 1
        expected = _full_fold(config, "a", head)
        assert follower.projector.hash() == expected.hash()
        assert follower.state.telemetry == expected.state.telemetry is not None
    finally:
        await _stop(follower, task)


async def test_a_newest_page_without_its_node_folds_everything(store, bus, config):
    early = [_sample(bus, "a", i) for i in range(5)]
    await _publish(bus, store, [*early, *_mixed(bus, ["b"])])
    follower, folded, task = await _load(bus, config, "a", page=10)
    try:
        assert folded.count("telemetry.sampled") > 10  # the shortcut could not tell
        expected = _full_fold(config, "a", store.eventlog.last_seq)
        assert follower.projector.hash() == expected.hash()
        assert follower.state.telemetry is not None
        assert follower.state.telemetry.sample_id == early[-1].id
    finally:
        await _stop(follower, task)


async def test_a_snapshot_plus_a_latest_wins_tail_matches_a_full_fold(store, bus, config):
    await _publish(bus, store, _mixed(bus, ["a", "b"]))
    first, _, task = await _load(bus, config, "a")
    await _stop(first, task)  # saves a snapshot
    for nodes in (["b"], ["a", "b", None]):  # a tail without its node's samples, then with
        await _publish(bus, store, _mixed(bus, nodes, start=100))
        follower, folded, task = await _load(bus, config, "a")
        try:
            assert follower.restored_from is not None
            assert folded.count("telemetry.sampled") <= 1
            expected = _full_fold(config, "a", store.eventlog.last_seq)
            assert follower.projector.hash() == expected.hash()
            snapshot = msgspec.to_builtins(follower.state)
            assert snapshot == msgspec.to_builtins(expected.state)
        finally:
            await _stop(follower, task)
