"""Ingest benchmark: events published through the bus until the store holds them.

    python bench/ingest.py [--events N] [--chunk C] [--store subprocess|inproc]

Starts its own nats-server (embedded, port 0, temp dir) and a store, either as
a subprocess (``gpuroute serve store``, the default: on a 2-core machine the
publisher, the store and nats-server then compete for the cores as they do
when deployed) or in this process. Publishes N realistic job events with
``Bus.publish_many`` in chunks and waits until the store's stats endpoint
counts them all. In the same run it measures two ceilings on this machine:
raw nats-py ``js.publish_async`` + ``publish_async_completed()`` of the same
payloads to a fresh stream, and raw ``sqlite3`` ``executemany`` of the same
rows into the store's schema (WAL, synchronous=NORMAL, one transaction per
batch). Prints one JSON object; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import psutil
from nats.js.api import StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

from schemas import encode_event
from schemas.subjects import STORE_STATS
from schemas.system import StoreStats
from services.runtime.bus import Bus
from services.runtime.config import load_config
from services.runtime.errors import ServiceCallError
from services.runtime.natsserver import EmbeddedNats
from services.store.eventlog import PRAGMAS, SCHEMA

ROOT = Path(__file__).resolve().parent.parent


async def store_stats(bus: Bus) -> StoreStats:
    return await bus.call(STORE_STATS, {}, StoreStats, timeout=5.0)


async def wait_store_ready(bus: Bus, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"store exited with code {proc.returncode} before it was ready")
        try:
            await store_stats(bus)
            return
        except ServiceCallError:
            if time.monotonic() > deadline:
                raise SystemExit("store did not answer on gpuroute.store.stats in 30 s") from None
            await asyncio.sleep(0.1)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (this one when ``pid`` is None)."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def end_to_end(
    url: str,
    events: list[Any],
    chunk: int,
    proc: subprocess.Popen[bytes] | None,
    server_pid: int,
) -> dict[str, Any]:
    bus = await Bus.connect(url, source="bench")
    try:
        await wait_store_ready(bus, proc)
        before = (await store_stats(bus)).count
        n = len(events)
        pids = {"this_process": None, "nats_server": server_pid}
        if proc is not None:
            pids["store_process"] = proc.pid
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            await bus.publish_many(events[i : i + chunk])
        t_published = time.perf_counter()
        while True:
            stats = await store_stats(bus)
            if stats.count - before >= n:
                break
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"store exited with code {proc.returncode}")
            await asyncio.sleep(0.02)
        t_stored = time.perf_counter()
        cpu = {name: round(cpu_seconds(pid) - cpu0[name], 2) for name, pid in pids.items()}
        return {
            "seconds": round(t_stored - t0, 3),
            "publish_seconds": round(t_published - t0, 3),
            "events_per_s": round(n / (t_stored - t0)),
            "publish_only_per_s": round(n / (t_published - t0)),
            "stored": stats.count - before,
            "dead_letters": stats.dead_letters,
            "cpu_seconds": cpu,
        }
    finally:
        await bus.close()


async def store_catchup(
    url: str, data_dir: Path, events: list[Any], chunk: int, stored_before: int
) -> dict[str, Any]:
    """The store's own drain rate: publish ``events`` while no store runs, then
    start one on the same data dir and time it until it holds them all (from
    its first stats answer, so its start-up is not counted)."""
    bus = await Bus.connect(url, source="bench")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for i in range(0, len(events), chunk):
            await bus.publish_many(events[i : i + chunk])
        target = stored_before + len(events)
        proc = start_store_subprocess(url, data_dir)
        await wait_store_ready(bus, proc)
        t0 = time.perf_counter()
        count0 = (await store_stats(bus)).count
        cpu0 = cpu_seconds(proc.pid)
        while (count := (await store_stats(bus)).count) < target:
            if proc.poll() is not None:
                raise SystemExit(f"store exited with code {proc.returncode}")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        return {
            "store_catchup_per_s": round((count - count0) / elapsed),
            "store_catchup_cpu_seconds": round(cpu_seconds(proc.pid) - cpu0, 2),
            "store_catchup_events": count - count0,
        }
    finally:
        await bus.close()
        if proc is not None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)


async def baseline_js(url: str, messages: list[tuple[str, bytes, str]]) -> float:
    """Raw ``publish_async`` of the same payloads (and Nats-Msg-Id headers) to a
    fresh file stream; events/s up to ``publish_async_completed()``."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.add_stream(
            StreamConfig(
                name="BENCH_BASELINE",
                subjects=["bench.>"],
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        t0 = time.perf_counter()
        for subject, body, eid in messages:
            await js.publish_async("bench." + subject, body, headers={"Nats-Msg-Id": eid})
        await js.publish_async_completed()
        elapsed = time.perf_counter() - t0
        await js.delete_stream("BENCH_BASELINE")
        return len(messages) / elapsed
    finally:
        await nc.close()


Row = tuple[str, str, str, float, bytes]


def baseline_sqlite(path: Path, rows: list[Row], batch: int) -> float:
    """Raw ``sqlite3`` batched inserts of the same rows into the store's schema."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        conn.executescript(SCHEMA)
        t0 = time.perf_counter()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO events (id, type, key, ts, body) VALUES (?, ?, ?, ?, ?)",
                rows[i : i + batch],
            )
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)
    finally:
        conn.close()


def start_store_subprocess(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    gpuroute = Path(sys.executable).parent / "gpuroute"
    cmd = [str(gpuroute)] if gpuroute.is_file() else [sys.executable, "-m", "services.cli"]
    cmd += ["serve", "store", "--nats-url", url, "--data-dir", str(data_dir)]
    cmd += ["--log-level", "WARNING"]
    log = open(data_dir.parent / "store.log", "wb")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def run_inproc(
    url: str, data_dir: Path, events: list[Any], chunk: int, server_pid: int
) -> dict[str, Any]:
    from services.store.service import StoreService

    config = load_config(data_dir=str(data_dir), nats__url=url, log_level="WARNING")
    bus = await Bus.connect(url, source="store")
    store = StoreService(bus, config)
    await store.start()
    try:
        return await end_to_end(url, events, chunk, None, server_pid)
    finally:
        await store.stop()
        await bus.close()


async def main_async(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    events = list(workload.events(args.events, start=time.time()))
    server = EmbeddedNats(tmp / "nats", port=0)
    url = await asyncio.to_thread(server.start)
    proc: subprocess.Popen[bytes] | None = None
    assert server._proc is not None
    server_pid = server._proc.pid
    try:
        data_dir = tmp / "store"
        data_dir.mkdir()
        if args.store == "subprocess":
            proc = start_store_subprocess(url, data_dir)
            result = await end_to_end(url, events, args.chunk, proc, server_pid)
        else:
            result = await run_inproc(url, data_dir, events, args.chunk, server_pid)
        if proc is not None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)
            proc = None
        catchup: dict[str, Any] = {}
        if args.store == "subprocess" and args.catchup:
            more = list(workload.events(args.events, seed=8, start=time.time()))
            catchup = await store_catchup(url, data_dir, more, args.chunk, result["stored"])

        bodies = [(e.type, encode_event(e), e.id) for e in events]
        js_rate = await baseline_js(url, bodies)
        rows = [
            (e.id, e.type, e.key, e.ts, body)
            for e, (_, body, _) in zip(events, bodies, strict=True)
        ]
        sqlite_rate = await asyncio.to_thread(
            baseline_sqlite, tmp / "baseline.db", rows, args.sqlite_batch
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        await asyncio.to_thread(server.stop)

    eps = result["events_per_s"]
    return {
        "bench": "ingest",
        "store": args.store,
        "events": args.events,
        "chunk": args.chunk,
        **result,
        **catchup,
        "baseline_js_publish_async_per_s": round(js_rate),
        "baseline_sqlite_rows_per_s": round(sqlite_rate),
        "sqlite_batch": args.sqlite_batch,
        "ratio_vs_js_publish_async": round(eps / js_rate, 3),
        "ratio_vs_sqlite": round(eps / sqlite_rate, 3),
        "goal_events_per_s": 20_000,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--chunk", type=int, default=5_000, help="events per publish_many call")
    p.add_argument("--store", choices=("subprocess", "inproc"), default="subprocess")
    p.add_argument("--sqlite-batch", type=int, default=10_000)
    p.add_argument(
        "--no-catchup",
        dest="catchup",
        action="store_false",
        help="skip the store catch-up measurement (N more events, store started after)",
    )
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gpuroute-bench-ingest-", dir="/tmp"))
    try:
        out = asyncio.run(main_async(args, tmp))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
