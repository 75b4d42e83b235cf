"""The SQLite event log (``<data-dir>/events.db``).

Table ``events``: ``seq`` is the global position (1, 2, 3 ... in commit order;
rows are never deleted or updated), ``id`` is UNIQUE so a redelivered event is
ignored, ``body`` is the event exactly as it was published (JSON bytes).
Table ``tracking`` holds the JetStream stream position the log has consumed
up to and ``stream_created``, the creation time of the stream that position
belongs to (a position means nothing in a stream that was recreated); both are
written in the same transaction as the events they cover, so they can never
disagree with the log, whatever moment the process dies.
Table ``dead_letters`` keeps messages that failed validation, whole, by
stream and stream position, apart from the events. Table ``notices`` keeps
what an operator must acknowledge (a stream reset) across restarts.

:class:`EventLog` is the async writer/reader of the store service (WAL). One
plain ``sqlite3`` connection writes (:mod:`services.store.writer`): each
operation (a whole append transaction: BEGIN IMMEDIATE, the inserts, dead
letters, the position, the select of new rows when some were redeliveries,
COMMIT or ROLLBACK) is ONE function, run on the event loop when it is small
(``INLINE_ROWS``, ``INLINE_BYTES``) and the writer's thread is idle, else on that thread, and
never cut in half by a cancelled caller. Reads run on
:class:`~services.store.reads.Readers`, plain connections on threads of their
own, so reads never queue behind a batch nor behind each other. It keeps
the set of distinct event types in the log (loaded at open by an index
skip-scan, grown before each commit) so that reads resolve type filters to
exact types (:mod:`services.store.reads`). :func:`iter_events` is
a plain synchronous reader for replays that run without NATS.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from services.runtime.datadir import private_file
from services.runtime.errors import StoreError
from services.store import reads
from services.store.writer import WAIT, Writer, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    id    TEXT    NOT NULL UNIQUE,
    type  TEXT    NOT NULL,
    key   TEXT    NOT NULL,
    ts    REAL    NOT NULL,
    body  BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_by_key ON events(key, seq);
CREATE TABLE IF NOT EXISTS tracking (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    id   INTEGER PRIMARY KEY,
    text TEXT    NOT NULL
);
"""

DEAD_LETTERS = """
CREATE TABLE dead_letters (
    stream_created TEXT    NOT NULL DEFAULT '',
    stream_seq     INTEGER NOT NULL,
    subject        TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    body           BLOB    NOT NULL,
    PRIMARY KEY (stream_created, stream_seq)
)
"""
"""Keyed by stream as well as position: a recreated stream numbers from 1 again."""

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", WAIT)
INLINE_ROWS = 32
"""Appends of at most this many rows and dead letters together (and at most
``INLINE_BYTES`` of their bodies) run on the event loop itself when the writer
thread is idle (well under a millisecond of SQLite work): a hop to the thread
and back cost ~100-130 us of CPU on a loaded 2-core machine, more than a
transaction of a few events (~120 us)."""
INLINE_BYTES = 64 * 1024
"""Bodies (events and dead letters) an append run on the loop may write: 32
rows of 256 KiB took 19-27 ms there, 64 dead letters of 256 KiB 60 ms."""

DISTINCT_TYPES = """
WITH RECURSIVE t(type) AS (
    SELECT (SELECT min(type) FROM events)
    UNION ALL
    SELECT (SELECT min(type) FROM events WHERE type > t.type) FROM t WHERE t.type IS NOT NULL
) SELECT type FROM t WHERE type IS NOT NULL
"""
"""One index seek per distinct type (a skip-scan of events_by_type), not a scan."""

Row = tuple[str, str, str, float, bytes]
"""One event to append: (id, type, key, ts, body)."""
Stored = tuple[int, str, bytes]
"""One appended event: (seq, type, body)."""
Dead = tuple[int, str, str, bytes]
"""One dead letter: (stream_seq, subject, reason, body)."""
T = TypeVar("T")


def type_range(prefix: str) -> tuple[str, str]:
    """Bounds for ``prefix <= type < upper`` so a type-prefix query uses the index."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _migrate(w: sqlite3.Connection) -> None:
    """Additive migrations of a log written by an older version."""
    if "stream_created" not in _columns(w, "tracking"):
        w.execute("ALTER TABLE tracking ADD COLUMN stream_created TEXT")
    columns = _columns(w, "dead_letters")
    if "stream_created" in columns:
        return

    def rebuild(w: sqlite3.Connection) -> None:
        if columns:  # keyed by stream_seq alone: rebuild it, keeping every row
            w.execute("ALTER TABLE dead_letters RENAME TO dead_letters_v1")
            w.execute(DEAD_LETTERS)
            w.execute(
                "INSERT INTO dead_letters (stream_seq, subject, reason, body) "
                "SELECT stream_seq, subject, reason, body FROM dead_letters_v1"
            )
            w.execute("DROP TABLE dead_letters_v1")
        else:
            w.execute(DEAD_LETTERS)

    transaction(w, rebuild)


def _columns(w: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[0]) for r in w.execute("SELECT name FROM pragma_table_info(?)", (table,))}


def _track(w: sqlite3.Connection, name: str, position: int, stream_created: str | None) -> None:
    w.execute(
        "INSERT INTO tracking (name, position, stream_created) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET position = excluded.position, "
        "stream_created = excluded.stream_created",
        (name, position, stream_created),
    )


def _tracking(w: sqlite3.Connection, name: str) -> tuple[int, str | None]:
    row = w.execute(
        "SELECT position, stream_created FROM tracking WHERE name = ?", (name,)
    ).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def _connect(path: Path) -> sqlite3.Connection:
    w = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            w.execute(pragma)
        w.executescript(SCHEMA)
        _migrate(w)
    except BaseException:
        w.close()
        raise
    return w


class EventLog:
    def __init__(
        self,
        path: Path,
        writer: Writer,
        tracking_name: str,
    ) -> None:
        self.path = path
        self.tracking_name = tracking_name
        self._writer = writer
        self._readers = reads.Readers(path)
        self.last_seq = 0
        """The newest position in the log; set right after each COMMIT, where
        the transaction ran, so it is never behind a committed batch however
        the append's caller ends."""
        self.types: set[str] = set()
        """Every event type in the log (a superset for a moment while a batch commits)."""
        self.stream_created: str | None = None
        """The stream the recorded position belongs to (None: not known yet)."""

    @classmethod
    async def open(cls, path: Path, tracking_name: str = "store") -> EventLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            if name == path.name or (path.parent / name).exists():  # SQLite copies the mode
                private_file(path.parent / name)
        try:
            writer = await Writer.open(path, lambda: _connect(path))
        except sqlite3.Error as e:
            raise StoreError(f"cannot open event log {path}: {e}") from e
        log = cls(path, writer, tracking_name)

        def load(w: sqlite3.Connection) -> None:
            log.last_seq = int(w.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            log.types = {str(r[0]) for r in w.execute(DISTINCT_TYPES)}
            _, log.stream_created = _tracking(w, tracking_name)

        try:
            await writer.run(load, "cannot open event log", inline=False)
        except BaseException:
            await log.close()
            raise
        return log

    async def close(self) -> None:
        """Wait for the write under way (if any), then close every connection;
        a write asked for afterwards raises StoreError."""
        await self._writer.close()
        await asyncio.to_thread(self._readers.close)

    async def tracking(self) -> tuple[int, str | None]:
        """(the stream position the log holds every event up to, 0: none;
        the ``created`` time of the stream it belongs to, None: not recorded)."""
        name = self.tracking_name
        return await self._writer.run(lambda w: _tracking(w, name), "cannot read the position")

    async def position(self) -> int:
        return (await self.tracking())[0]

    async def append(
        self, rows: Sequence[Row], position: int, dead: Sequence[Dead] = ()
    ) -> list[Stored]:
        """Append ``rows`` (ignoring ids already held), record dead letters and
        the stream ``position`` (of stream :attr:`stream_created`), all in one
        transaction, run whole on the event loop (a small batch: ``INLINE_ROWS``,
        ``INLINE_BYTES``) or on the writer thread. Returns what was new."""
        self.types.update(r[1] for r in rows)  # before COMMIT: a read must never miss a type
        created = self.stream_created

        def insert(w: sqlite3.Connection) -> list[Stored]:
            before = self.last_seq
            inserted = w.executemany(
                "INSERT OR IGNORE INTO events (id, type, key, ts, body) VALUES (?, ?, ?, ?, ?)",
                rows,
            ).rowcount
            if dead:
                w.executemany(
                    "INSERT OR IGNORE INTO dead_letters "
                    "(stream_created, stream_seq, subject, reason, body) VALUES (?, ?, ?, ?, ?)",
                    [(created or "", *d) for d in dead],
                )
            _track(w, self.tracking_name, position, created)
            if inserted == len(rows):
                return [(before + i + 1, r[1], r[4]) for i, r in enumerate(rows)]
            # some were redeliveries: ask which rows are new
            return [
                (int(s), str(t), bytes(b))
                for s, t, b in w.execute(
                    "SELECT seq, type, body FROM events WHERE seq > ? ORDER BY seq", (before,)
                )
            ]

        def append(w: sqlite3.Connection) -> list[Stored]:
            stored = transaction(w, insert)
            if stored:
                self.last_seq = stored[-1][0]
            return stored

        body_bytes = sum(len(r[4]) for r in rows) + sum(len(d[3]) for d in dead)
        small = len(rows) + len(dead) <= INLINE_ROWS and body_bytes <= INLINE_BYTES
        stored = await self._writer.run(append, "append failed", small)
        self._writer.grown(body_bytes)
        return stored

    async def restart_tracking(self, stream_created: str, notice: str | None = None) -> None:
        """Record that the log now follows the stream created at ``stream_created``
        from its start (position 0), with ``notice`` for the operator, in one
        transaction (:attr:`stream_created` changes when it commits)."""

        def restart(w: sqlite3.Connection) -> None:
            _track(w, self.tracking_name, 0, stream_created)
            if notice is not None:
                w.execute("INSERT INTO notices (text) VALUES (?)", (notice,))

        def run(w: sqlite3.Connection) -> None:
            transaction(w, restart)
            self.stream_created = stream_created

        await self._writer.run(run, "cannot record the stream position")

    async def adopt_stream(self, stream_created: str) -> None:
        """Record which stream the current position belongs to (first start
        with this version, or an empty log)."""

        def adopt(w: sqlite3.Connection) -> None:
            position, _ = _tracking(w, self.tracking_name)
            _track(w, self.tracking_name, position, stream_created)
            self.stream_created = stream_created

        await self._writer.run(adopt, "cannot record the stream")

    async def notices(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute("SELECT text FROM notices ORDER BY id")]

        return await self._reading(query)

    async def acknowledge(self) -> int:
        """Forget every notice; returns how many there were."""
        return await self._writer.run(
            lambda w: int(w.execute("DELETE FROM notices").rowcount), "cannot acknowledge notices"
        )

    async def read(self, query: reads.Query, max_bytes: int | None = None) -> reads.Page:
        """The page of ``query`` (see :meth:`query`): at most ``max_bytes`` of
        bodies (None: no bound), but at least one event when one matches."""
        return await self._reading(lambda conn: reads.read_page(conn, query, max_bytes))

    def query(
        self,
        after: int = 0,
        limit: int = 100,
        type_prefixes: Sequence[str] = (),
        key: str | None = None,
        last: bool = False,
        patterns: Sequence[str] = (),
    ) -> reads.Query:
        """Events after position ``after`` (ascending) whose type starts with any
        of ``type_prefixes`` or matches any NATS subject pattern of ``patterns``
        (all when both are empty), with ``key``; at most ``limit`` of them. With
        ``last``, the newest (still ascending). Type filters are resolved to the
        exact types the log holds here."""
        types = reads.resolve(self.types, type_prefixes, patterns)
        return reads.Query(after=after, limit=limit, types=types, key=key, last=last)

    async def read_reply(self, query: reads.Query, max_bytes: int | None) -> bytes:
        """The page of ``query`` as the bytes of a ``StoredPage`` reply, read
        and built in one hop to a reader thread, or right here when its plan
        reads few rows (``reads.INLINE_ROWS``)."""

        def page(conn: sqlite3.Connection) -> bytes:
            return reads.encode_page(reads.read_page(conn, query, max_bytes), self.last_seq)

        rows = reads.examined(query)
        if rows is not None and rows <= reads.INLINE_ROWS:
            try:
                return page(self._readers.connection())
            except sqlite3.Error as e:
                raise StoreError(f"read from {self.path} failed: {e}") from e
        return await self._reading(page)

    async def _reading(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._readers.run(fn)
        except sqlite3.Error as e:
            raise StoreError(f"read from {self.path} failed: {e}") from e

    async def counts(self) -> tuple[int, int, int]:
        """(event count, last seq, dead letters)."""

        def query(conn: sqlite3.Connection) -> tuple[int, int, int]:
            count, last, dead = conn.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT coalesce(max(seq), 0) FROM events),"
                " (SELECT count(*) FROM dead_letters)"
            ).fetchone()
            return int(count), int(last), int(dead)

        return await self._reading(query)

    def file_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )


def iter_events(
    path: Path, until_seq: int | None = None, type_prefix: str | None = None, chunk: int = 10_000
) -> Iterator[tuple[int, str, bytes]]:
    """Yield (seq, type, body) in position order, read-only, without NATS."""
    if not Path(path).is_file():
        raise StoreError(f"no event log at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path}: {e}") from e
    try:
        where: list[str] = ["seq > ?"]
        args: list[object] = [0]
        if until_seq is not None:
            where.append("seq <= ?")
            args.append(until_seq)
        if type_prefix:
            lo, hi = type_range(type_prefix)
            where.append("type >= ? AND type < ?")
            args += [lo, hi]
        cur = conn.execute(
            f"SELECT seq, type, body FROM events WHERE {' AND '.join(where)} ORDER BY seq",
            args,
        )
        while rows := cur.fetchmany(chunk):
            yield from rows
    except sqlite3.Error as e:
        raise StoreError(f"read from {path} failed: {e}") from e
    finally:
        conn.close()
