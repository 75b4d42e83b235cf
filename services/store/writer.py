"""The event log's one writing ``sqlite3`` connection, and where each call runs.

:meth:`Writer.run` runs ``fn(connection)`` whole, as one call: on the event
loop itself when the caller allows it (a small batch) and the writer's thread
is idle, else on that one thread (one hop there and back, while the loop goes
on receiving). Through aiosqlite an append was 4+ hops, each a queue put, a
``call_soon_threadsafe`` and a self-pipe wake-up of the loop (~100-130 us of
CPU each on a loaded 2-core machine), more than a transaction of a few events
costs (~120 us). The connection is never used by both at once: the loop
runs a call only while no call is on the thread (``Writer._busy``).

Two things SQLite would otherwise do inside a call are kept off the loop:
waiting for another process's write lock (the connection's ``busy_timeout``
is 0; a call the lock refuses there, having done nothing, runs on the thread,
which waits ``WAIT``), and the WAL checkpoint (auto-checkpoint is off; a
PASSIVE checkpoint runs on the thread after about ``CHECKPOINT_BYTES`` of
WAL, as SQLite's own would at 1000 pages). A PASSIVE checkpoint never waits:
one that a reader's snapshot (or a checkpoint of another process) cut short
is tried again after ``RETRY_BYTES`` more, not after ``CHECKPOINT_BYTES``.

A cancelled caller (a service stop) never cuts a call in half: it runs to
its end, the caller waits for that end, and only then gets its
CancelledError, so what the call recorded (``last_seq`` after a COMMIT) is
true and the log is closed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from services.runtime.errors import StoreError

WAIT = "PRAGMA busy_timeout=5000"
"""How long a call on the thread (and every reader) waits for a lock."""
NO_WAIT = "PRAGMA busy_timeout=0"
WRITER_PRAGMAS = ("PRAGMA wal_autocheckpoint=0", NO_WAIT)
"""Set once the log is open (opening and migrating wait as usual)."""
CHECKPOINT_BYTES = 4 * 1024 * 1024
"""Estimated WAL growth after which a checkpoint is run (SQLite's default is
1000 pages of 4 KiB)."""
TRANSACTION_BYTES = 5 * 4096
"""What one transaction adds to the WAL besides its bodies, at least (a leaf
page of the table, of each of the three indexes and of the tracking table).
Bodies count twice: a page half filled before is written whole again, and so
are the index pages a batch touches (measured: 32 rows of 1 KB added ~97 KB)."""
RETRY_BYTES = 256 * 1024
"""Estimated WAL growth after which a checkpoint that could not copy the
whole WAL is tried again: soon, yet only after writes, so it never spins
while a reader holds its snapshot."""

T = TypeVar("T")


def transaction(w: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """``body(w)`` between ``BEGIN IMMEDIATE`` and ``COMMIT``, synchronously.
    On any failure it is rolled back and the failure raised: a ROLLBACK that
    fails too is a note on that failure, never raised in its place."""
    w.execute("BEGIN IMMEDIATE")
    try:
        result = body(w)
        w.execute("COMMIT")
    except BaseException as e:
        if w.in_transaction:  # a failed COMMIT may have ended it already
            try:
                w.execute("ROLLBACK")
            except sqlite3.Error as rollback:
                e.add_note(f"ROLLBACK failed too: {rollback}")
        raise
    return result


def _checkpoint(w: sqlite3.Connection) -> bool:
    """A PASSIVE checkpoint; True when it copied the whole WAL into the database."""
    busy, frames, copied = w.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return not busy and copied >= frames


class Writer:
    def __init__(self, path: Path, connection: sqlite3.Connection, pool: ThreadPoolExecutor):
        self.path = path
        self._w = connection
        self._pool = pool
        self._busy = 0
        """Calls handed to the thread and not yet seen back on the loop."""
        self._wal_bytes = 0
        """Estimated WAL growth since the last checkpoint."""
        self._closed = False

    @classmethod
    async def open(cls, path: Path, connect: Callable[[], sqlite3.Connection]) -> Writer:
        """``connect()`` (open, configure, migrate) on the writer's new thread.
        Raises what it raises."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="store-write")

        def opened() -> sqlite3.Connection:
            w = connect()
            try:
                for pragma in WRITER_PRAGMAS:
                    w.execute(pragma)
            except BaseException:
                w.close()
                raise
            return w

        try:
            return cls(path, await asyncio.get_running_loop().run_in_executor(pool, opened), pool)
        except BaseException:
            pool.shutdown(wait=False)
            raise

    async def close(self) -> None:
        """Wait for the call under way (if any), then close the connection; a
        call asked for afterwards raises StoreError."""
        self._closed = True

        def close() -> None:
            self._pool.shutdown(wait=True)
            self._w.close()

        await asyncio.to_thread(close)

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], failure: str, inline: bool = True
    ) -> T:
        """``fn(connection)``, whole: on the loop when ``inline`` and the
        thread is idle, else on the thread; see the module's docstring.
        ``sqlite3.Error`` is raised as ``StoreError("<failure> (<path>): ...")``."""
        if self._closed:
            raise StoreError(f"{failure} ({self.path}): the event log is closed")
        try:
            if inline and self._busy == 0:
                try:
                    return fn(self._w)
                except sqlite3.OperationalError as e:
                    if e.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                        raise  # else nothing was done: wait for the lock on the thread
            done = self._on_thread(fn)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                while not done.done():
                    with contextlib.suppress(asyncio.CancelledError):  # cancelled again: wait
                        await asyncio.wait((done,))
                raise
        except sqlite3.Error as e:
            raise StoreError(f"{failure} ({self.path}): {e}") from e

    def grown(self, body_bytes: int) -> None:
        """Count a commit of ``body_bytes`` of bodies (events and dead letters);
        past ``CHECKPOINT_BYTES`` of estimated WAL, checkpoint on the thread
        (PASSIVE: it never waits for readers; calls meanwhile queue behind it
        there). A checkpoint that fails or copies only part of the WAL is
        tried again after ``RETRY_BYTES`` more."""
        self._wal_bytes += TRANSACTION_BYTES + 2 * body_bytes
        if self._wal_bytes >= CHECKPOINT_BYTES:
            self._wal_bytes = 0
            self._on_thread(_checkpoint).add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[bool]) -> None:
        if done.cancelled() or done.exception() is not None or not done.result():
            self._wal_bytes = max(self._wal_bytes, CHECKPOINT_BYTES - RETRY_BYTES)

    def _on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        def waiting(w: sqlite3.Connection) -> T:
            w.execute(WAIT)
            try:
                return fn(w)
            finally:
                w.execute(NO_WAIT)

        self._busy += 1
        done = asyncio.get_running_loop().run_in_executor(self._pool, waiting, self._w)
        done.add_done_callback(self._back)
        return done

    def _back(self, done: asyncio.Future[Any]) -> None:
        self._busy -= 1
        if not done.cancelled():
            done.exception()  # retrieved: a cancelled caller's outcome is in the log
