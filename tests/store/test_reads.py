"""Store reads: paged by bytes as well as count, type filters resolved to exact
types, and every statement on an index (checked with EXPLAIN QUERY PLAN)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from schemas import limits
from schemas.system import decode_page
from services.store import reads
from services.store.eventlog import DISTINCT_TYPES, EventLog, Row
from tests.store.support import read as read_over_nats

TYPES = ["job.submitted", "job.advised", "provider.upserted", "job.failed", "adapter.failed"]


def rows(n: int, start: int = 0, size: int = 100) -> list[Row]:
    """``n`` events cycling through TYPES, each body ``size`` bytes."""
    out: list[Row] = []
    for i in range(start, start + n):
        body = (b'{"i":%d}' % i).ljust(size, b" ")
        out.append((f"id-{i}", TYPES[i % len(TYPES)], f"key-{i % 7}", 1.0, body))
    return out


async def read(log: EventLog, max_bytes: int | None = None, **filters: object) -> reads.Page:
    return await log.read(log.query(**filters), max_bytes)  # type: ignore[arg-type]


@pytest.fixture
async def log(tmp_path: Path):  # type: ignore[no-untyped-def]
    log = await EventLog.open(tmp_path / "events.db")
    yield log
    await log.close()


async def test_a_page_holds_at_most_max_page_bytes_and_says_more(log):
    await log.append(rows(1000, size=2000), position=1000)
    page = await read(log, limit=1000, max_bytes=limits.MAX_PAGE_BYTES)
    assert page.more is True
    assert sum(len(b) for _, b in page.rows) <= limits.MAX_PAGE_BYTES
    assert len(page.rows) == limits.MAX_PAGE_BYTES // 2000
    seen, after = [], 0
    while True:
        page = await read(log, after=after, limit=1000, max_bytes=limits.MAX_PAGE_BYTES)
        seen += [s for s, _ in page.rows]
        if not page.more:
            break
        after = page.rows[-1][0]
    assert seen == list(range(1, 1001))


async def test_a_page_has_at_least_one_event_and_more_is_exact(log):
    await log.append(rows(3, size=5000), position=3)
    page = await read(log, limit=10, max_bytes=100)
    assert ([s for s, _ in page.rows], page.more) == ([1], True)
    page = await read(log, limit=3)
    assert ([s for s, _ in page.rows], page.more) == ([1, 2, 3], False)
    page = await read(log, limit=2)
    assert ([s for s, _ in page.rows], page.more) == ([1, 2], True)


async def test_patterns_and_prefixes_match_exact_types(log):
    await log.append(rows(50), position=50)
    page = await read(log, limit=100, patterns=["*.failed"])
    types = {TYPES[(s - 1) % len(TYPES)] for s, _ in page.rows}
    assert types == {"job.failed", "adapter.failed"} and len(page.rows) == 20
    page = await read(log, limit=100, patterns=["job.>"], type_prefixes=["provider."])
    assert len(page.rows) == 40
    page = await read(log, limit=100, patterns=["nothing.*"])
    assert page.rows == [] and page.more is False
    page = await read(log, limit=100, patterns=["job.failed"], key="key-3")
    assert all(TYPES[(s - 1) % 5] == "job.failed" and (s - 1) % 7 == 3 for s, _ in page.rows)
    assert page.rows


async def test_last_with_a_leading_wildcard_returns_the_newest_matching(log):
    batch = rows(2000)
    batch += [(f"p-{i}", "provider.upserted", "p", 1.0, b"{}") for i in range(19)]
    batch += rows(500, start=5000)
    await log.append([r for r in batch if r[1] != "provider.upserted" or r[0].startswith("p-")],
                     position=1)  # fmt: skip
    page = await read(log, limit=3, patterns=["*.upserted"], last=True)
    ids = await _ids(log.path, [s for s, _ in page.rows])
    assert ids == ["p-16", "p-17", "p-18"] and page.more is True


async def _ids(path: Path, seqs: list[int]) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [conn.execute("SELECT id FROM events WHERE seq = ?", (s,)).fetchone()[0]
                for s in seqs]  # fmt: skip


async def test_distinct_types_are_loaded_at_open_and_grow_on_append(tmp_path):
    log = await EventLog.open(tmp_path / "events.db")
    await log.append(rows(10), position=10)
    await log.append([("x", "flags.changed", "k", 1.0, b"{}")], position=11)
    assert log.types == {*TYPES, "flags.changed"}
    await log.close()
    log = await EventLog.open(tmp_path / "events.db")
    assert log.types == {*TYPES, "flags.changed"}
    await log.close()


def _plan(db: Path, sql: str, args: list[object]) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


QUERIES = [
    reads.Query(after=5, limit=10, types=None),
    reads.Query(after=5, limit=10, types=("job.failed",)),
    reads.Query(after=5, limit=10, types=("job.failed", "adapter.failed")),
    reads.Query(after=5, limit=10, types=None, key="key-1"),
    reads.Query(after=5, limit=10, types=("job.failed", "adapter.failed"), key="key-1"),
]


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("query", QUERIES, ids=["all", "one-type", "types", "key", "key-types"])
async def test_every_read_uses_an_index_and_never_sorts_bodies(log, query, last):
    # enough rows, and ANALYZE, that a planner free to choose might scan instead
    await log.append(rows(3000), position=3000)
    with sqlite3.connect(log.path) as conn:
        conn.execute("ANALYZE")
    q = reads.Query(query.after, query.limit, query.types, query.key, last)
    sql, args = reads.plan(q)
    plan = _plan(log.path, sql, args)
    assert not any(step.startswith("SCAN events") for step in plan), plan
    outer = plan[0]
    if q.key is not None:
        assert "events_by_key" in outer, plan
    elif q.types is not None and len(q.types) == 1:
        assert "events_by_type" in outer, plan
    else:
        assert "PRIMARY KEY" in outer, plan
    # a temp b-tree may order the positions of one merged type, never the bodies
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan[:2], plan


async def test_distinct_types_are_read_by_skip_scan(log):
    await log.append(rows(3000), position=3000)
    plan = _plan(log.path, DISTINCT_TYPES, [])
    assert not any(step.startswith("SCAN events") for step in plan), plan
    assert any("COVERING INDEX events_by_type (type>?)" in step for step in plan), plan


async def test_a_slow_read_holds_up_no_other_read(bus, fast_store):
    """nats-py hands a subscription's requests to its callback one at a time:
    a read awaited there kept every later read waiting behind it."""
    release = asyncio.Event()
    real = fast_store.eventlog.read_reply

    async def read_reply(query: reads.Query, max_bytes: int | None) -> bytes:
        if query.key == "slow":
            await release.wait()
        return await real(query, max_bytes)

    fast_store.eventlog.read_reply = read_reply
    slow = asyncio.create_task(read_over_nats(bus, key="slow"))
    try:
        page = await asyncio.wait_for(read_over_nats(bus, limit=1), 3)
        assert page.events == [] and not slow.done()
    finally:
        release.set()
    assert (await slow).events == []


async def test_a_page_is_one_hop_to_a_reader_thread_or_none(log):
    await log.append(rows(300), position=300)
    hops = 0
    run = log._readers.run

    async def counted(fn):  # type: ignore[no-untyped-def]
        nonlocal hops
        hops += 1
        return await run(fn)

    log._readers.run = counted
    raw = await log.read_reply(log.query(limit=100, type_prefixes=["job."]), limits.MAX_PAGE_BYTES)
    page = decode_page(raw)
    assert hops == 1 and len(page.events) == 100 and page.more
    assert page.last_seq == 300
    # a page that reads few rows is read on the event loop: no hop at all
    small = await log.read_reply(log.query(limit=50), limits.MAX_PAGE_BYTES)
    assert hops == 1 and [e.seq for e in decode_page(small).events] == list(range(1, 51))
    # a key with types has no bound on the rows it steps over: always a thread
    await log.read_reply(log.query(limit=1, key="key-1", type_prefixes=["job."]), None)
    assert hops == 2
