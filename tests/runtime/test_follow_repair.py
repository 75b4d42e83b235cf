"""follow(): lost broadcasts are read back from the store in order, forged
positions are dropped, history pages follow ``more``, the live buffer is
bounded in bytes.

``StoreDouble`` answers ``gpuroute.store.read`` over the real nats-server
from a list the test controls, so a test can put an event "in the log"
without broadcasting it (a lost ``stored.*`` message) or broadcast a
position the log never had (a forged one). One test runs the real store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas import encode_event, limits
from schemas.subjects import STORE_READ, STORED_PREFIX
from schemas.system import StoreReadRequest, encode_stored
from services.runtime.bus import Bus
from services.runtime.follow import (
    FollowerBehind,
    FollowStats,
    Stop,
    follow,
    follow_events,
    subject_matches,
)
from tests.support import lifecycle, poll


class StoreDouble:
    """The store's read contract (patterns, after, limit, last, more) over NATS."""

    def __init__(self, bus: Bus, page_events: int = 1000) -> None:
        self.bus = bus
        self.log: list[tuple[int, str, bytes]] = []
        self.reads: list[StoreReadRequest] = []
        self.page_events = page_events

    async def start(self) -> None:
        await self.bus.nc.subscribe(STORE_READ, cb=self._read)
        await self.bus.nc.flush()

    async def _read(self, msg) -> None:  # type: ignore[no-untyped-def]
        req = msgspec.json.decode(msg.data, type=StoreReadRequest)
        self.reads.append(req)
        pats = req.patterns or [">"]
        rows = [r for r in self.log
                if r[0] > req.after and any(subject_matches(p, r[1]) for p in pats)]  # fmt: skip
        limit = min(req.limit, self.page_events)
        page = rows[-limit:] if req.last else rows[:limit]
        more = not req.last and len(rows) > limit
        items = b",".join(encode_stored(seq, body) for seq, _, body in page)
        last_seq = self.log[-1][0] if self.log else 0
        await msg.respond(b'{"events":[%s],"last_seq":%d,"more":%s}'
                          % (items, last_seq, b"true" if more else b"false"))  # fmt: skip

    async def append(self, events, broadcast: bool = True) -> list[int]:  # type: ignore[no-untyped-def]
        seqs = []
        for event in events:
            seq = len(self.log) + 1
            body = encode_event(event)
            self.log.append((seq, event.type, body))
            if broadcast:
                await self.bus.nc.publish(STORED_PREFIX + event.type, encode_stored(seq, body))
            seqs.append(seq)
        await self.bus.nc.flush()
        return seqs


@pytest.fixture
async def double(bus) -> AsyncIterator[StoreDouble]:  # type: ignore[no-untyped-def]
    d = StoreDouble(bus)
    await d.start()
    yield d


def seq_of(item: bytes) -> int:
    return int(msgspec.json.decode(item)["seq"])


async def take(agen: AsyncIterator[bytes], n: int) -> list[int]:
    return [seq_of(await asyncio.wait_for(anext(agen), 10)) for _ in range(n)]


async def test_lost_broadcasts_are_read_from_the_store_in_order(double, bus):
    stats = FollowStats()
    agen = follow(bus, [">"], after=0, stats=stats, quiet_s=30)
    await double.append(lifecycle(bus, "job-1")[:1])
    assert await take(agen, 1) == [1]
    await double.append(lifecycle(bus, "job-2"), broadcast=False)  # 2..5: lost
    await double.append(lifecycle(bus, "job-3")[:1])  # 6 arrives: a jump
    assert await take(agen, 5) == [2, 3, 4, 5, 6]
    assert (stats.recovered, stats.forged, stats.last) == (4, 0, 6)
    await agen.aclose()


async def test_a_quiet_follower_asks_the_store_what_it_missed(double, bus):
    stats = FollowStats()
    agen = follow(bus, ["job.>"], after=0, stats=stats, quiet_s=0.2)
    await double.append(lifecycle(bus, "job-1")[:1])
    assert await take(agen, 1) == [1]
    await double.append(lifecycle(bus, "job-2")[:2], broadcast=False)  # the last ones: lost
    assert await take(agen, 2) == [2, 3]
    assert stats.recovered == 2
    await agen.aclose()


async def test_advance_moves_the_position_past_unmatched_events_when_quiet(double, bus):
    stats = FollowStats()
    agen = follow_events(bus, ["job.submitted"], after=0, stats=stats, quiet_s=0.2, advance=True)
    events = lifecycle(bus, "job-1")
    await double.append(events)  # 1 matches; 2..4 do not
    first = await asyncio.wait_for(anext(agen), 10)
    assert (first.seq, first.moved) == (1, None) and first.event is not None
    moved = await asyncio.wait_for(anext(agen), 10)  # the quiet spell
    assert (moved.seq, moved.moved, moved.event, moved.raw) == (4, events[3].id, None, None)
    assert (stats.moved, stats.last) == (1, 4)
    await double.append(lifecycle(bus, "job-2"))  # 5 is the next position: taken live
    assert (await asyncio.wait_for(anext(agen), 10)).seq == 5
    await agen.aclose()


async def test_without_advance_a_quiet_spell_moves_nothing(double, bus):
    stats = FollowStats()
    agen = follow_events(bus, ["job.submitted"], after=0, stats=stats, quiet_s=0.2)
    await double.append(lifecycle(bus, "job-1"))
    assert (await asyncio.wait_for(anext(agen), 10)).seq == 1
    step = asyncio.ensure_future(anext(agen))
    await poll(lambda: stats.reads >= 2)  # two quiet spells read the store
    assert not step.done() and (stats.moved, stats.last) == (0, 1)
    step.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await step


async def test_stop_ends_a_follow_that_waits_for_live_events(double, bus):
    stop = Stop()
    subs = len(bus.nc._subs)
    agen = follow_events(bus, ["job.>"], after=0, quiet_s=30, stop=stop)
    await double.append(lifecycle(bus, "job-1")[:1])
    assert (await asyncio.wait_for(anext(agen), 10)).seq == 1
    step = asyncio.ensure_future(anext(agen))  # waits for a live message
    await asyncio.sleep(0.1)
    stop.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(step, 5)
    assert len(bus.nc._subs) == subs and stop.wakes == []  # its subscription ended


async def test_a_forged_position_is_dropped_and_real_events_still_arrive(double, bus):
    stats = FollowStats()
    agen = follow(bus, ["job.>"], after=0, stats=stats, quiet_s=30)
    await double.append(lifecycle(bus, "job-1")[:1])
    assert await take(agen, 1) == [1]
    forged = encode_event(lifecycle(bus, "forged")[0])
    await bus.nc.publish(STORED_PREFIX + "job.submitted", encode_stored(10**15, forged))
    await double.append(lifecycle(bus, "job-2")[:2])
    assert await take(agen, 2) == [2, 3]
    assert (stats.forged, stats.last) == (1, 3)
    await agen.aclose()


async def test_a_filtered_follower_reads_once_for_everything_queued(double, bus):
    stats = FollowStats()
    agen = follow(bus, ["job.submitted"], after=0, stats=stats, quiet_s=30)
    await double.append(lifecycle(bus, "job-0")[:1])
    assert await take(agen, 1) == [1]
    for i in range(50):  # each job.submitted is 4 positions after the previous one
        await double.append(lifecycle(bus, f"job-{i + 1}"))
    await poll(lambda: stats.received == 50)  # all queued, none consumed yet
    before = stats.reads
    assert await take(agen, 50) == list(range(2, 200, 4))
    assert stats.reads - before <= 2
    assert all(r.patterns == ["job.submitted"] for r in double.reads)
    await agen.aclose()


async def test_history_follows_more_past_short_pages(bus):
    double = StoreDouble(bus, page_events=7)
    await double.start()
    for i in range(10):
        await double.append(lifecycle(bus, f"job-{i}"), broadcast=False)
    agen = follow(bus, ["job.>"], after=3, quiet_s=30)
    assert await take(agen, 37) == list(range(4, 41))
    await agen.aclose()


async def test_a_stalled_consumer_gets_follower_behind_with_its_position(double, bus):
    stats = FollowStats()
    agen = follow(bus, [">"], after=0, stats=stats, max_buffer_bytes=20_000, quiet_s=30)
    await double.append(lifecycle(bus, "job-0"))
    assert await take(agen, 4) == [1, 2, 3, 4]
    for i in range(40):  # ~40 KB, never read
        await double.append(lifecycle(bus, f"job-{i + 1}"))
    await poll(lambda: stats.behind)
    assert stats.waiting == 0  # the buffer was freed at once
    with pytest.raises(FollowerBehind) as e:
        await anext(agen)
    assert e.value.last == 4 and "after=4" in str(e.value)


async def test_malformed_messages_are_counted_per_follower(double, bus):
    one, two = FollowStats(), FollowStats()
    a = follow(bus, ["job.>"], after=0, stats=one, quiet_s=30)
    await double.append(lifecycle(bus, "job-1")[:1])
    assert await take(a, 1) == [1]
    await bus.nc.publish(STORED_PREFIX + "job.started", b'{"seq": 5, "event": "[[[["}')
    await bus.nc.publish(STORED_PREFIX + "job.started", b"x" * (limits.MAX_EVENT_BYTES + 100))
    await double.append(lifecycle(bus, "job-2")[:1])
    assert await take(a, 1) == [2]
    assert (one.skipped, two.skipped) == (2, 0)
    await a.aclose()


async def test_with_the_real_store_a_forged_position_does_not_hide_real_events(store, bus):
    stats = FollowStats()
    agen = follow(bus, [">"], after=0, stats=stats, quiet_s=30)
    await bus.publish_many(lifecycle(bus, "job-1")[:1])
    assert await take(agen, 1) == [1]
    forged = encode_event(lifecycle(bus, "forged")[0])
    await bus.nc.publish(STORED_PREFIX + "job.submitted", encode_stored(10**15, forged))
    await bus.publish_many(lifecycle(bus, "job-2"))
    assert await take(agen, 4) == [2, 3, 4, 5]
    assert stats.forged == 1
    await agen.aclose()
