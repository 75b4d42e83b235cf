"""Replay benchmark: rebuild the job table from an event log of 1,000,000 events.

    python bench/replay.py [--events N] [--db PATH] [--repeat R]

Builds an ``events.db`` in the store's schema (``services/store/eventlog.py``)
directly with ``sqlite3``: ~200k jobs x 5 lifecycle events, bodies from
``encode_event``. With ``--db PATH`` an existing file is reused as it is (a
missing one is built there and kept); otherwise the file lives in a temp
directory under /tmp and is removed at the end.

Then it times the rebuild exactly as ``gpuroute replay`` does it
(``iter_events`` + ``Projector.fold_raw`` of the job table projection), and
beside it, in the same run, a raw baseline: ``sqlite3`` read of every body in
position order and a decode of each with the same msgspec decoder. The
snapshot hash is timed apart. Each is run ``--repeat`` times (best is
reported, every run is listed). Prints one JSON object; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

from schemas import Event, encode_event
from schemas.envelope import _decoder
from services.runtime.projection import Projector
from services.scheduler.table import JobTableProjection
from services.store.eventlog import PRAGMAS, SCHEMA, iter_events


def build(path: Path, n: int, batch: int = 50_000, events: Iterable[Event] | None = None) -> float:
    """Write ``n`` job events (or ``events``) into a fresh log at ``path``; returns
    seconds."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.executescript(SCHEMA)
        rows: list[tuple[str, str, str, float, bytes]] = []

        def flush() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (id, type, key, ts, body) VALUES (?, ?, ?, ?, ?)", rows
            )
            conn.execute("COMMIT")
            rows.clear()

        for ev in workload.events(n) if events is None else events:
            rows.append((ev.id, ev.type, ev.key, ev.ts, encode_event(ev)))
            if len(rows) >= batch:
                flush()
        if rows:
            flush()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


def replay(path: Path) -> tuple[float, float, int, str]:
    """The rebuild of ``gpuroute replay``: (fold seconds, hash seconds, jobs, sha256)."""
    t0 = time.perf_counter()
    projection = JobTableProjection()
    projector = Projector(projection)
    projector.fold_raw(iter_events(path, None, projection.type_prefix))
    t1 = time.perf_counter()
    digest = projector.hash()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(projector.state), digest


def baseline(path: Path, chunk: int = 10_000) -> tuple[float, int]:
    """Raw read of every body in position order + decode with the same decoder."""
    decode = _decoder().decode
    t0 = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    n = 0
    try:
        cur = conn.execute("SELECT body FROM events ORDER BY seq")
        while rows := cur.fetchmany(chunk):
            for (body,) in rows:
                decode(body)
            n += len(rows)
    finally:
        conn.close()
    return time.perf_counter() - t0, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    p.add_argument("--db", type=Path, help="reuse this events.db (built there if missing)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each (best is reported)")
    args = p.parse_args()

    tmp: Path | None = None
    build_s: float | None = None
    if args.db is not None:
        path = args.db
        if not path.exists():
            build_s = build(path, args.events)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="gpuroute-bench-replay-", dir="/tmp"))
        path = tmp / "events.db"
        build_s = build(path, args.events)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        # warm the page cache once so neither side pays the first disk read
        baseline(path)
        replay_runs: list[float] = []
        hash_runs: list[float] = []
        base_runs: list[float] = []
        digests: set[str] = set()
        jobs = 0
        for _ in range(args.repeat):
            gc.collect()
            fold_s, hash_s, jobs, digest = replay(path)
            replay_runs.append(fold_s)
            hash_runs.append(hash_s)
            digests.add(digest)
            gc.collect()
            base_s, _ = baseline(path)
            base_runs.append(base_s)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)

    eps = events / min(replay_runs)
    base = events / min(base_runs)
    out: dict[str, Any] = {
        "bench": "replay",
        "events": events,
        "jobs": jobs,
        "events_per_s": round(eps),
        "baseline_per_s": round(base),
        "ratio": round(eps / base, 3),
        "replay_seconds": [round(s, 3) for s in replay_runs],
        "baseline_seconds": [round(s, 3) for s in base_runs],
        "hash_seconds": round(min(hash_runs), 3),
        "events_per_s_with_hash": round(events / (min(replay_runs) + min(hash_runs))),
        "same_hash_every_run": len(digests) == 1,
        "sha256": sorted(digests)[0],
        "build_seconds": round(build_s, 1) if build_s is not None else None,
        "db": str(args.db) if args.db is not None else "temp (removed)",
        "goal_events_per_s": 300_000,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
