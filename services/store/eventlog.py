"""The SQLite event log (``<data-dir>/events.db``).

Table ``events``: ``seq`` is the global position (1, 2, 3 ... in commit order;
rows are never deleted or updated), ``id`` is UNIQUE so a redelivered event is
ignored, ``body`` is the event exactly as it was published (JSON bytes).
Table ``tracking`` holds the JetStream stream position the log has consumed
up to; it is written in the same transaction as the events it covers, so the
two can never disagree, whatever moment the process dies.
Table ``dead_letters`` keeps messages that failed validation, by stream
position, apart from the events.

:class:`EventLog` is the async writer/reader of the store service (aiosqlite,
WAL; one connection writes, another reads so reads never queue behind a
batch). :func:`iter_events` is a plain synchronous reader for replays that
run without NATS.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiosqlite

from services.runtime.errors import StoreError

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
CREATE TABLE IF NOT EXISTS dead_letters (
    stream_seq INTEGER PRIMARY KEY,
    subject    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    body       BLOB    NOT NULL
);
"""

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000")

Row = tuple[str, str, str, float, bytes]
"""One event to append: (id, type, key, ts, body)."""
Stored = tuple[int, str, bytes]
"""One appended event: (seq, type, body)."""


def type_range(prefix: str) -> tuple[str, str]:
    """Bounds for ``prefix <= type < upper`` so a type-prefix query uses the index."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EventLog:
    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        tracking_name: str,
    ) -> None:
        self.path = path
        self.tracking_name = tracking_name
        self._w = writer
        self._r = reader
        self.last_seq = 0

    @classmethod
    async def open(cls, path: Path, tracking_name: str = "store") -> EventLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            for pragma in PRAGMAS:
                await writer.execute(pragma)
            await writer.executescript(SCHEMA)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open event log {path}: {e}") from e
        log = cls(path, writer, reader, tracking_name)
        async with writer.execute("SELECT coalesce(max(seq), 0) FROM events") as cur:
            row = await cur.fetchone()
            log.last_seq = int(row[0]) if row else 0
        return log

    async def close(self) -> None:
        await self._w.close()
        await self._r.close()

    async def position(self) -> int:
        """The stream position the log holds every event up to (0: none)."""
        async with self._w.execute(
            "SELECT position FROM tracking WHERE name = ?", (self.tracking_name,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def append(
        self,
        rows: Sequence[Row],
        position: int,
        dead: Sequence[tuple[int, str, str, bytes]] = (),
    ) -> list[Stored]:
        """Append ``rows`` (ignoring ids already held), record dead letters and
        the stream ``position``, all in one transaction. Returns what was new."""
        w = self._w
        try:
            await w.execute("BEGIN IMMEDIATE")
            try:
                before = self.last_seq
                cur = await w.executemany(
                    "INSERT OR IGNORE INTO events (id, type, key, ts, body) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                inserted = cur.rowcount
                if dead:
                    await w.executemany(
                        "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?)", dead
                    )
                await w.execute(
                    "INSERT INTO tracking (name, position) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET position = excluded.position",
                    (self.tracking_name, position),
                )
                if inserted == len(rows):
                    stored = [(before + i + 1, r[1], r[4]) for i, r in enumerate(rows)]
                else:  # some were redeliveries: ask which rows are new
                    async with w.execute(
                        "SELECT seq, type, body FROM events WHERE seq > ? ORDER BY seq", (before,)
                    ) as c:
                        stored = [(int(s), str(t), bytes(b)) for s, t, b in await c.fetchall()]
                await w.execute("COMMIT")
            except BaseException:
                await w.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreError(f"append to {self.path} failed: {e}") from e
        if stored:
            self.last_seq = stored[-1][0]
        return stored

    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        type_prefixes: Sequence[str] = (),
        key: str | None = None,
        last: bool = False,
    ) -> list[tuple[int, bytes]]:
        """Events after position ``after`` (ascending) whose type starts with
        any of ``type_prefixes`` (all when empty) and with ``key``; with
        ``last``, the newest ``limit`` of them (still ascending)."""
        where: list[str] = ["seq > ?"]
        args: list[object] = [after]
        if type_prefixes:
            ranges = [type_range(p) for p in dict.fromkeys(type_prefixes)]
            where.append("(" + " OR ".join(["(type >= ? AND type < ?)"] * len(ranges)) + ")")
            args += [bound for r in ranges for bound in r]
        if key is not None:
            where.append("key = ?")
            args.append(key)
        order = "DESC" if last else "ASC"
        sql = (
            f"SELECT seq, body FROM events WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        )
        try:
            async with self._r.execute(sql, (*args, limit)) as cur:
                rows = [(int(s), bytes(b)) for s, b in await cur.fetchall()]
        except sqlite3.Error as e:
            raise StoreError(f"read from {self.path} failed: {e}") from e
        return rows[::-1] if last else rows

    async def counts(self) -> tuple[int, int, int]:
        """(event count, last seq, dead letters)."""
        async with self._r.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT coalesce(max(seq), 0) FROM events), "
            "(SELECT count(*) FROM dead_letters)"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

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
