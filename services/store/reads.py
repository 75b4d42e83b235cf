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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from schemas import limits
from services.runtime.follow import subject_matches

FETCH = 64
"""Rows per fetch while streaming bodies (bounds what is read past a full page)."""


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


async def read_page(
    conn: aiosqlite.Connection, q: Query, max_bytes: int | None = limits.MAX_PAGE_BYTES
) -> Page:
    """Run :func:`plan` and cut the result at ``limit`` events and ``max_bytes``
    of bodies (None: no byte bound); at least one event when one matches."""
    if q.types == ():
        return Page([], False)
    sql, args = plan(q)
    rows: list[tuple[int, bytes]] = []
    size, more = 0, False
    async with conn.execute(sql, args) as cur:
        while not more and (chunk := await cur.fetchmany(FETCH)):
            for seq, body in chunk:
                body = bytes(body)
                if len(rows) == q.limit or (
                    rows and max_bytes is not None and size + len(body) > max_bytes
                ):
                    more = True
                    break
                rows.append((int(seq), body))
                size += len(body)
    if q.last:
        rows.reverse()
    return Page(rows, more)
