"""Paged reads of the event log that always use an index and always fit a reply.

A read's type filters (prefixes such as ``job.``, NATS patterns such as
``*.failed``) are first resolved against the set of distinct types the log
holds, to exact types. The SQL then never scans the log: every statement is
one of the shapes of :func:`plan`, each pinned to its index with
``INDEXED BY`` (with bound parameters SQLite cannot see how selective a type
is, and on a large file it picked the primary key over the type index: 0.45 s
a page instead of milliseconds). Several types are merged from one covering
index range each, at most ``limit + 1`` positions per type, so the newest
events matching a leading-wildcard pattern cost as much as any other page.

Bodies are streamed in position order and the page stops at ``limit`` events
or at ``max_bytes`` of bodies, whichever comes first (always at least one
event), so a reply of up to :data:`schemas.limits.MAX_PAGE_BYTES` plus one
event of at most :data:`schemas.limits.MAX_EVENT_BYTES` fits NATS's
``max_payload``.

Reads run on :class:`Readers`, a few threads with a plain ``sqlite3``
connection each: a whole page (query, cut, and the reply bytes) is one hop
to a thread and back. Through aiosqlite's single reader thread it was four
(execute, two fetches, close), and every read queued behind the others:
about 1.1k pages of 100 a second at 32 requests in flight. A page whose
plan reads at most :data:`INLINE_ROWS` index entries (:func:`examined`) is
read on the event loop instead: the hop alone cost ~150 us of CPU, more than
such a page, and halved the pages a second on two cores.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import TypeVar

from schemas import limits
from schemas.system import encode_stored
from services.runtime.follow import subject_matches

FETCH = 256
"""Rows per fetch (bounds what is read past a full page)."""
READERS = 2
INLINE_ROWS = 256
"""Pages that read at most this many rows are read on the event loop (at most
``MAX_PAGE_BYTES`` of bodies: well under a millisecond)."""
"""Reader threads (and connections). SQLite releases the GIL while it steps a
statement, so two reads overlap each other and the event loop."""

T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    after: int
    limit: int
    types: tuple[str, ...] | None
    """Exact types to return; None: every type."""
    key: str | None = None
    last: bool = False


@dataclass(frozen=True)
class Page:
    rows: list[tuple[int, bytes]]
    """(seq, body) in ascending position order."""
    more: bool
    """Cut short by ``limit`` or by bytes: more matching events may follow
    (with ``last``: precede)."""


def resolve(
    known: Iterable[str], prefixes: Sequence[str], patterns: Sequence[str]
) -> tuple[str, ...] | None:
    """The exact types among ``known`` that start with a prefix or match a
    pattern; None when there is no filter, or when every known type matches
    (then no type condition is cheaper than all of them)."""
    if not prefixes and not patterns:
        return None
    known = sorted(known)
    types = tuple(
        t
        for t in known
        if any(t.startswith(p) for p in prefixes) or any(subject_matches(p, t) for p in patterns)
    )
    return None if types and len(types) == len(known) else types


def plan(q: Query) -> tuple[str, list[object]]:
    """The SQL of one page (bodies ascending, or descending with ``last``),
    at most ``limit + 1`` rows so that a full page knows whether more follow."""
    order = "DESC" if q.last else "ASC"
    n = q.limit + 1
    if q.key is not None:
        where, args = "key = ? AND seq > ?", [q.key, q.after]
        if q.types is not None:
            where += f" AND type IN ({','.join('?' * len(q.types))})"
            args += q.types
        sql = f"SELECT seq, body FROM events INDEXED BY events_by_key WHERE {where} "
        return sql + f"ORDER BY seq {order} LIMIT ?", [*args, n]
    if q.types is None:
        sql = f"SELECT seq, body FROM events WHERE seq > ? ORDER BY seq {order} LIMIT ?"
        return sql, [q.after, n]
    if len(q.types) == 1:
        sql = (
            "SELECT seq, body FROM events INDEXED BY events_by_type "
            f"WHERE type = ? AND seq > ? ORDER BY seq {order} LIMIT ?"
        )
        return sql, [q.types[0], q.after, n]
    arm = (
        "SELECT seq FROM (SELECT seq FROM events INDEXED BY events_by_type "
        f"WHERE type = ? AND seq > ? ORDER BY seq {order} LIMIT ?)"
    )
    merged = " UNION ALL ".join([arm] * len(q.types)) + f" ORDER BY seq {order} LIMIT ?"
    sql = f"SELECT seq, body FROM events WHERE seq IN ({merged}) ORDER BY seq {order}"
    return sql, [*(a for t in q.types for a in (t, q.after, n)), n]


def examined(q: Query) -> int | None:
    """At most how many index entries the plan of ``q`` reads; None: no bound
    (a key with types steps over the key's events of other types)."""
    if q.types == ():
        return 0
    if q.key is not None and q.types is not None:
        return None
    return (q.limit + 1) * max(1, len(q.types or ()))


def read_page(
    conn: sqlite3.Connection, q: Query, max_bytes: int | None = limits.MAX_PAGE_BYTES
) -> Page:
    """Run :func:`plan` and cut the result at ``limit`` events and ``max_bytes``
    of bodies (None: no byte bound); at least one event when one matches.
    Blocking: call it on a :class:`Readers` thread."""
    if q.types == ():
        return Page([], False)
    sql, args = plan(q)
    budget = sys.maxsize if max_bytes is None else max_bytes
    rows: list[tuple[int, bytes]] = []
    more = False
    cur = conn.execute(sql, args)
    try:
        # in chunks, the cut found by bisecting running sizes: a Python step
        # per row cost as much as SQLite reading it
        while chunk := cur.fetchmany(min(FETCH, q.limit + 1 - len(rows))):
            sizes = list(accumulate(len(body) for _, body in chunk))
            fits = bisect_right(sizes, budget)
            if not rows and fits == 0:
                fits = 1  # at least one event, whatever its size
            fits = min(fits, q.limit - len(rows))
            rows += chunk[:fits]
            if fits < len(chunk):
                more = True
                break
            budget -= sizes[-1]
    finally:
        cur.close()
    if q.last:
        rows.reverse()
    return Page(rows, more)


def encode_page(page: Page, last_seq: int) -> bytes:
    """The reply of a read (``schemas.system.StoredPage``), built from the
    stored bodies as they are (no decoding, no re-encoding). ``last_seq`` is
    raised to the page's newest position: a page is never ahead of it."""
    items = b",".join([encode_stored(seq, body) for seq, body in page.rows])
    if page.rows:  # ascending, also with ``last``
        last_seq = max(last_seq, page.rows[-1][0])
    more = b"true" if page.more else b"false"
    return b'{"events":[%s],"last_seq":%d,"more":%s}' % (items, last_seq, more)


class Readers:
    """A few threads, each with its own read-only ``sqlite3`` connection to
    the log (WAL: they see every committed batch and never block the writer).

    :meth:`run` hands ``fn(connection)`` to a free thread: a caller does all of
    its SQL in that one call. Raises ``sqlite3.Error`` as ``fn`` does."""

    def __init__(self, path: Path, threads: int = READERS) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store-read")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (the event loop's for a read done inline)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            return fn(self.connection())

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Wait for the reads under way, then close every connection."""
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
