"""The event log's writer. Small appends run on the event loop, large ones on
the writer thread, and the WAL is checkpointed off the loop (the writer's
auto-checkpoint is off), so it stays bounded. A cancelled caller (a service
stop) never cuts a write of the event log in half: the transaction runs to
its end, ``last_seq`` and ``stream_created`` follow what committed, the
CancelledError reaches the caller (never turned into a StoreError that the
writer would retry), and what was committed but not acknowledged is
redelivered and ignored by id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.store.eventlog import INLINE_BYTES, INLINE_ROWS, Dead, EventLog, Row
from services.store.service import StoreService
from services.store.writer import CHECKPOINT_BYTES, RETRY_BYTES, transaction
from tests.support import lifecycle, watch_stored


def batch(n: int, start: int) -> list[Row]:
    return [
        (f"id-{i}", "job.submitted", f"job-{i}", 1.0, b'{"i":%d}' % i)
        for i in range(start, start + n)
    ]


def on_disk(db: Path) -> tuple[int, int, int, str | None, list[str]]:
    """(max seq, count, position, stream, notices) as another connection sees them."""
    with sqlite3.connect(db) as conn:
        last, count = conn.execute("SELECT coalesce(max(seq), 0), count(*) FROM events").fetchone()
        position, stream = conn.execute(
            "SELECT coalesce(max(position), 0), max(stream_created) FROM tracking"
        ).fetchone()
        notices = [r[0] for r in conn.execute("SELECT text FROM notices ORDER BY id")]
    return int(last), int(count), int(position), stream, notices


async def cancel_after(task: asyncio.Task[object], i: int) -> None:
    """Cancel ``task`` at a moment that varies with ``i``: before it starts,
    after some loop turns, or after a short sleep while its thread works."""
    for _ in range(i % 5):
        await asyncio.sleep(0)
    if i % 4 == 3:
        await asyncio.sleep(0.0002 * (i % 7))
    task.cancel()


async def test_cancelled_appends_keep_the_log_consistent(tmp_path: Path) -> None:
    """Batches too big to write on the event loop alternate with small ones
    (written there while the writer thread is idle, else queued on it)."""
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    announced: list[bytes] = []  # what appends returned as new (what the store broadcasts)
    redelivered: set[bytes] = set()
    unacked: list[Row] = []  # rows of cancelled appends: JetStream redelivers them
    cut_after_commit = total = 0
    try:
        for i in range(60):
            size = INLINE_ROWS + 1 if i % 3 else 2
            rows = unacked + batch(size, total)
            total += size
            task = asyncio.create_task(log.append(rows, position=i + 1))
            await cancel_after(task, i)
            try:
                stored = await task
            except asyncio.CancelledError:  # never a StoreError: nothing to retry
                assert task.cancelled()
                unacked = rows
                redelivered.update(r[4] for r in rows)
            else:
                announced += [body for _, _, body in stored]
                unacked = []
            last, count, position, _, _ = on_disk(db)
            assert log.last_seq == last == count, f"round {i}: last_seq went stale"
            if unacked and count == total:  # committed, then the caller saw the cancel
                cut_after_commit += 1
                assert position == i + 1
        announced += [body for _, _, body in await log.append(unacked, position=61)]
    finally:
        await log.close()
    assert cut_after_commit > 0, "no cancel came while a transaction ran"
    with sqlite3.connect(db) as conn:
        table = conn.execute("SELECT seq, id, body FROM events ORDER BY seq").fetchall()
    assert [r[0] for r in table] == list(range(1, total + 1))
    assert sorted(r[1] for r in table) == sorted(r[0] for r in batch(total, 0))
    assert len(announced) == len(set(announced)), "an event was announced twice"
    # each stored event was announced by its append, or its batch is redelivered
    assert {r[2] for r in table} == set(announced) | redelivered


async def test_cancelled_restart_tracking_keeps_the_stream_consistent(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    try:
        await log.append(batch(3, 0), position=3)
        for i in range(30):
            # a batch on the writer thread first (or not): the restart queues behind it
            busy = log.append(batch(INLINE_ROWS + 1, 100 * i + 100), position=3) if i % 2 else None
            appending = asyncio.create_task(busy) if busy else None
            await asyncio.sleep(0)
            task = asyncio.create_task(log.restart_tracking(f"stream-{i}", f"notice {i}"))
            await cancel_after(task, i)
            with contextlib.suppress(asyncio.CancelledError):  # or it ended before the cancel
                await task
            if appending:
                await appending
            _, _, position, stream, notices = on_disk(db)
            assert log.stream_created == stream, f"round {i}"
            assert len(notices) == len(set(notices))
            assert await log.tracking() == (position, stream)
    finally:
        await log.close()


async def test_small_appends_run_on_the_loop_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    body = b"x" * 1000
    try:
        rows = [(f"id-{i}", "job.submitted", "k", 1.0, body) for i in range(INLINE_ROWS)]
        coro = log.append(rows, position=1)
        with pytest.raises(StopIteration):  # done in one step: it never awaited a thread
            coro.send(None)
        n = 3 * CHECKPOINT_BYTES // (len(body) * INLINE_ROWS)
        for b in range(n):
            rows = [(f"id-{b}-{i}", "job.submitted", "k", 1.0, body) for i in range(INLINE_ROWS)]
            await log.append(rows, position=b + 2)
        # its high-water mark: a checkpointed WAL is written again from its start
        wal = await asyncio.to_thread(lambda: Path(f"{db}-wal").stat().st_size)
    finally:
        await log.close()
    assert wal < 2 * CHECKPOINT_BYTES, f"WAL grew to {wal} bytes: no checkpoint ran"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == ((n + 1) * INLINE_ROWS,)


def dead(n: int, start: int, size: int) -> list[Dead]:
    return [(i, "job.submitted", "not an event", b"d" * size) for i in range(start, start + n)]


async def ran_on_the_loop(log: EventLog, rows: list[Row], dead: list[Dead] = []) -> bool:  # noqa: B006
    """Whether the append was done in its task's first step (no thread awaited)."""
    task = asyncio.create_task(log.append(rows, log.last_seq + len(rows) + len(dead), dead))
    await asyncio.sleep(0)  # the task's first step runs before this returns
    inline = task.done()
    await task
    return inline


async def test_only_appends_small_in_rows_dead_letters_and_bytes_run_on_the_loop(
    tmp_path: Path,
) -> None:
    """A batch of dead letters only, or of large bodies, blocked the loop for
    tens of milliseconds (64 dead letters of 256 KiB: 60 ms)."""
    log = await EventLog.open(tmp_path / "events.db")
    try:
        assert await ran_on_the_loop(log, batch(2, 0), dead(2, 1, 100))
        assert not await ran_on_the_loop(log, [], dead(INLINE_ROWS + 1, 10, 100))
        assert not await ran_on_the_loop(log, batch(INLINE_ROWS - 2, 10), dead(3, 100, 10))
        assert not await ran_on_the_loop(log, [], dead(1, 200, INLINE_BYTES + 1))
        big = [(f"big-{i}", "job.submitted", "k", 1.0, b"x" * 4096) for i in range(INLINE_ROWS)]
        assert not await ran_on_the_loop(log, big)
    finally:
        await log.close()


async def test_dead_letters_count_toward_the_checkpoint(tmp_path: Path) -> None:
    """Batches of dead letters only grew the WAL without a checkpoint (30 of
    8 x 256 KiB: 63.9 MB)."""
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    size = 64 * 1024
    n = 3 * CHECKPOINT_BYTES // (8 * size)
    try:
        for b in range(n):
            await log.append([], position=b + 1, dead=dead(8, 8 * b, size))
        await log.tracking()  # queued behind a checkpoint under way
        wal = await asyncio.to_thread(lambda: Path(f"{db}-wal").stat().st_size)
    finally:
        await log.close()
    assert wal < 2 * CHECKPOINT_BYTES, f"WAL grew to {wal} bytes: no checkpoint ran"


async def test_a_checkpoint_a_reader_cut_short_is_retried_soon(tmp_path: Path) -> None:
    """A reader's snapshot keeps a PASSIVE checkpoint from copying the WAL;
    once it ends, the next ``RETRY_BYTES`` of writes retry (they waited for
    another ``CHECKPOINT_BYTES``)."""
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    reader = sqlite3.connect(db, isolation_level=None)
    body = b"x" * (32 * 1024)

    def rows(n: int, tag: str) -> list[Row]:
        return [(f"{tag}-{i}", "job.submitted", "k", 1.0, body) for i in range(n)]

    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
        before = db.stat().st_size
        for b in range(CHECKPOINT_BYTES // (2 * 8 * len(body)) + 1):
            await log.append(rows(8, f"r{b}"), position=b + 1)
        await log.tracking()  # queued behind the checkpoint
        # it copied at most the frames before the snapshot (the schema)
        assert db.stat().st_size - before < RETRY_BYTES, "it copied past the reader's snapshot"
        reader.execute("COMMIT")
        await log.append(rows(RETRY_BYTES // (2 * len(body)) + 1, "after"), position=100)
        await log.tracking()
        copied = db.stat().st_size - before
    finally:
        reader.close()
        await log.close()
    assert copied > CHECKPOINT_BYTES // 2, f"only {copied} bytes checkpointed: no retry ran"


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    """Another connection (a second process on the same file) holds the write
    lock: a small append waits for it on the writer thread while the event
    loop goes on, and commits once the lock is released."""
    db = tmp_path / "events.db"
    log = await EventLog.open(db)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(log.append(batch(2, 0), position=2))
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(0.05)  # the loop runs: the append did not block it
        assert loop.time() - before < 1.0 and not task.done()
        other.execute("COMMIT")
        assert [s for s, _, _ in await task] == [1, 2]
        assert log.last_seq == 2
    finally:
        other.close()
        await log.close()


def test_a_failed_transaction_raises_its_own_error_and_keeps_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x INTEGER)")

    def body(w: sqlite3.Connection) -> None:
        w.execute("INSERT INTO t VALUES (1)")
        raise ValueError("the body failed")

    with pytest.raises(ValueError, match="the body failed"):
        transaction(conn, body)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)

    def commits_early(w: sqlite3.Connection) -> None:  # no transaction left to roll back
        w.execute("INSERT INTO t VALUES (2)")
        w.execute("COMMIT")
        raise ValueError("after its commit")

    with pytest.raises(ValueError, match="after its commit"):
        transaction(conn, commits_early)
    conn.close()


async def test_stopping_the_store_mid_ingest_loses_duplicates_and_retries_nothing(
    bus: Bus, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """Stops at varied moments while events arrive: each stop ends at once
    (no retry loop), and the next store stores every event exactly once."""
    caplog.set_level(logging.WARNING)
    published: list[str] = []
    for round_ in range(4):
        store_bus = await Bus.connect(config.nats.url or "", source="store")
        store = StoreService(store_bus, config)
        await store.start()
        events = [e for j in range(50) for e in lifecycle(bus, f"job-{round_}-{j}")]
        published += [e.id for e in events]
        await bus.publish_many(events)
        for _ in range(round_ * 3):
            await asyncio.sleep(0)
        await asyncio.wait_for(store.stop(), 5)
        await store_bus.close()
    store_bus = await Bus.connect(config.nats.url or "", source="store")
    store = StoreService(store_bus, config)
    try:
        async with watch_stored(bus) as stored:
            await store.start()
            marker = lifecycle(bus, "marker")[0]
            await bus.publish(marker)
            await stored.first(where=lambda e: e.id == marker.id)
    finally:
        await store.stop()
        await store_bus.close()
    with sqlite3.connect(config.events_db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY seq")]
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == {*published, marker.id}
    assert seqs == list(range(1, len(seqs) + 1))
    failures = [r.getMessage() for r in caplog.records if "batch write failed" in r.getMessage()]
    assert failures == []
