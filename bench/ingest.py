"""Ingest benchmark: events published through the bus until the store holds them.

    python bench/ingest.py [--events N] [--chunk C] [--store subprocess|inproc]
                           [--catchup-only] [--profile FILE] [--sync always]
                           [--trickle RATE [--seconds S]]

Starts its own nats-server (embedded, port 0, temp dir) and a store, either as
a subprocess (``gpuroute serve store``, the default: on a 2-core machine the
publisher, the store and nats-server then compete for the cores as they do
when deployed) or in this process. Publishes N realistic job events with
``Bus.publish_many`` in chunks and waits until the store's stats endpoint
counts them all. In the same run it measures two ceilings on this machine:
raw nats-py ``js.publish_async`` + ``publish_async_completed()`` of the same
payloads to a fresh stream, and raw ``sqlite3`` ``executemany`` of the same
rows into the store's schema (WAL, synchronous=NORMAL, one transaction per
batch).

The catch-up measurement (on by default with a subprocess store) publishes N
more events while no store runs, then starts one and times it until it holds
them all; beside it, in the same run, a raw nats-py durable push consumer
with AckAll reads the same N messages of the same stream (its callback only
counts, and acks every ``RAW_ACK_EVERY``-th and the last message), and the
ratio of the two is the store's goal (>= 0.7). ``--catchup-only`` skips the
end-to-end run and the publish/sqlite ceilings; ``--profile FILE`` runs the
catching-up store under cProfile and writes its stats to FILE.

``--sync always`` (or a duration) measures durability's cost instead: the
end-to-end run and the raw publish ceiling on a fresh server with
nats-server's default ``sync_interval`` (``2m``: acknowledged from memory)
and then on one with the given value (``always``: fsync before every ack),
in the same run, under ``"sync"`` in the output. Everything else measured
runs on the default.
``--trickle RATE`` measures the store at a low rate instead (issue 12: the
budget's 3 events per cycle at ~3,500 events/s): ``TRICKLE_WORKERS``
publishers each send ``TRICKLE_BURST`` events with ``publish_many`` on a
schedule that totals RATE events/s, for ``--seconds``; it prints the store
process's CPU microseconds per event and the latency from a burst's publish
call to its last event's ``stored.<type>`` broadcast (p50/p99, ms).
Prints one JSON object; asserts nothing about time.
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

import msgspec
import nats
import psutil
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload

from schemas import encode_event
from schemas.subjects import STORE_STATS, STORED_PREFIX, STREAM
from schemas.system import StoreStats
from services.runtime.bus import Bus
from services.runtime.config import load_config
from services.runtime.errors import ServiceCallError
from services.runtime.natsserver import EmbeddedNats
from services.store.eventlog import PRAGMAS, SCHEMA
from services.store.feed import MAX_ACK_PENDING

ROOT = Path(__file__).resolve().parent.parent
NATS_DEFAULT_SYNC = "2m"
"""nats-server's own ``sync_interval``: what the figures without ``--sync`` use."""
RAW_ACK_EVERY = 1000
"""The raw consumer acks every this many messages (AckAll), like a store batch."""
TRICKLE_WORKERS = 16
TRICKLE_BURST = 3


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
        stats = await store_stats(bus)
        before, count0 = stats.count + stats.dead_letters, stats.count
        n = len(events)
        pids = {"this_process": None, "nats_server": server_pid}
        if proc is not None:
            pids["store_process"] = proc.pid
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            await bus.publish_many(events[i : i + chunk])
        t_published = time.perf_counter()
        deadline = time.monotonic() + 600
        while True:
            stats = await store_stats(bus)
            if stats.count + stats.dead_letters - before >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"store holds {stats.count - count0} of {n} events after 600 s")
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
            "stored": stats.count - count0,
            "dead_letters": stats.dead_letters,
            "cpu_seconds": cpu,
        }
    finally:
        await bus.close()


async def trickle(url: str, data_dir: Path, rate: float, seconds: float) -> dict[str, Any]:
    """Store CPU per event and publish-to-stored latency at ``rate`` events/s."""
    proc = start_store_subprocess(url, data_dir)
    bus = await Bus.connect(url, source="bench")
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def on_stored(msg: Msg) -> None:
        t = sent.pop(msgspec.json.decode(msg.data)["event"]["id"], None)
        if t is not None:
            latencies.append(time.perf_counter() - t)

    async def worker(w: int, until: float) -> int:
        interval = TRICKLE_WORKERS * TRICKLE_BURST / rate
        nxt, n = time.perf_counter() + w * interval / TRICKLE_WORKERS, 0
        while nxt < until:
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            burst = list(workload.events(TRICKLE_BURST, seed=w * 1_000_003 + n, start=time.time()))
            burst = [msgspec.structs.replace(e, id=bus.ids.new()) for e in burst]
            sent[burst[-1].id] = time.perf_counter()
            await bus.publish_many(burst)
            n, nxt = n + 1, nxt + interval
        return n * TRICKLE_BURST

    try:
        await wait_store_ready(bus, proc)
        sub = await bus.nc.subscribe(STORED_PREFIX + ">", cb=on_stored)
        await bus.nc.flush()
        warm = time.perf_counter() + 1.0  # warm-up second, not counted
        await asyncio.gather(*(worker(w, warm) for w in range(TRICKLE_WORKERS)))
        await wait_stored(bus, sent)
        latencies.clear()
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        counts = await asyncio.gather(*(worker(w, t0 + seconds) for w in range(TRICKLE_WORKERS)))
        await wait_stored(bus, sent)
        cpu = cpu_seconds(proc.pid) - cpu0
        elapsed = time.perf_counter() - t0
        await sub.unsubscribe()
        n = sum(counts)
        latencies.sort()
        return {
            "trickle_rate": rate,
            "trickle_events": n,
            "trickle_events_per_s": round(n / elapsed),
            "trickle_burst": TRICKLE_BURST,
            "store_cpu_us_per_event": round(cpu / n * 1e6, 1),
            "stored_latency_ms": {
                "p50": round(latencies[len(latencies) // 2] * 1e3, 2),
                "p99": round(latencies[int(len(latencies) * 0.99)] * 1e3, 2),
            },
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        await bus.close()
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)


async def wait_stored(bus: Bus, sent: dict[str, float], timeout: float = 30.0) -> None:
    """Until every burst sent has been broadcast as stored."""
    deadline = time.monotonic() + timeout
    while sent:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(sent)} bursts not stored after {timeout} s")
        await asyncio.sleep(0.01)


async def store_catchup(
    url: str,
    data_dir: Path,
    events: list[Any],
    chunk: int,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The store's own drain rate: publish ``events`` while no store runs, then
    start one on the same data dir and time it until it holds them all (from
    its first stats answer, so its start-up is not counted). Beside it, the
    raw consumer's rate on the same messages."""
    bus = await Bus.connect(url, source="bench")
    proc: subprocess.Popen[bytes] | None = None
    try:
        await bus.ensure_streams()  # as the store would (--catchup-only: none ran yet)
        first_seq = (await bus.js.stream_info(STREAM)).state.last_seq + 1
        for i in range(0, len(events), chunk):
            await bus.publish_many(events[i : i + chunk])
        cpu_raw = cpu_seconds(None)
        raw_rate = await baseline_consumer(url, first_seq, len(events))
        cpu_raw = cpu_seconds(None) - cpu_raw
        target = first_seq + len(events) - 1
        proc = start_store_subprocess(url, data_dir, profile)
        await wait_store_ready(bus, proc)
        t0 = time.perf_counter()
        before = await store_stats(bus)
        cpu0 = cpu_seconds(proc.pid)
        after = await wait_position(bus, proc, target)
        elapsed = time.perf_counter() - t0
        rate = (after.stream_seq - before.stream_seq) / elapsed
        return {
            "store_catchup_per_s": round(rate),
            "store_catchup_cpu_seconds": round(cpu_seconds(proc.pid) - cpu0, 2),
            "store_catchup_events": after.stream_seq - before.stream_seq,
            "store_catchup_dead_letters": after.dead_letters - before.dead_letters,
            "baseline_raw_consumer_per_s": round(raw_rate),
            "baseline_raw_consumer_cpu_seconds": round(cpu_raw, 2),
            "ratio_catchup_vs_raw_consumer": round(rate / raw_rate, 3),
            "goal_ratio_catchup_vs_raw_consumer": 0.7,
        }
    finally:
        await bus.close()
        if proc is not None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)


async def wait_position(
    bus: Bus, proc: subprocess.Popen[bytes], target: int, timeout: float = 600.0
) -> StoreStats:
    """Poll the store until its stream position reaches ``target`` (stored
    events and dead letters both count); exit when the store dies or stalls."""
    deadline = time.monotonic() + timeout
    while (stats := await store_stats(bus)).stream_seq < target:
        if proc.poll() is not None:
            raise SystemExit(f"store exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(
                f"store reached position {stats.stream_seq} of {target} in {timeout} s"
            )
        await asyncio.sleep(0.02)
    return stats


async def baseline_consumer(url: str, first_seq: int, n: int) -> float:
    """Raw nats-py durable push consumer with AckAll on the store's stream,
    from ``first_seq``: messages/s until its callback has counted ``n``."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    count = 0
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count % RAW_ACK_EVERY == 0 or count == n:
            await msg.ack()
        if count == n:
            done.set()

    durable = "bench-raw"
    config = ConsumerConfig(
        durable_name=durable,
        deliver_subject=nc.new_inbox(),
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=first_seq,
        ack_policy=AckPolicy.ALL,
        ack_wait=30,
        max_ack_pending=MAX_ACK_PENDING,
    )
    try:
        t0 = time.perf_counter()
        info = await js.add_consumer(STREAM, config)
        sub = await js.subscribe_bind(STREAM, info.config, durable, cb=on_message, manual_ack=True)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - t0
        await sub.unsubscribe()
        await js.delete_consumer(STREAM, durable)
        return n / elapsed
    finally:
        await nc.close()


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


def start_store_subprocess(
    url: str, data_dir: Path, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    gpuroute = Path(sys.executable).parent / "gpuroute"
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "services.cli"]
    elif gpuroute.is_file():
        cmd = [str(gpuroute)]
    else:
        cmd = [sys.executable, "-m", "services.cli"]
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


async def sync_compare(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The end-to-end rate and the raw publish ceiling with the default
    ``sync_interval`` and with ``args.sync``, each on a fresh server and store."""
    events = list(workload.events(args.events, start=time.time()))
    bodies = [(e.type, encode_event(e), e.id) for e in events]
    out: dict[str, Any] = {}
    for sync in dict.fromkeys((NATS_DEFAULT_SYNC, args.sync)):
        folder = tmp / f"sync-{sync}"
        server = EmbeddedNats(folder / "nats", port=0, sync=sync)
        url = await asyncio.to_thread(server.start)
        assert server._proc is not None
        data_dir = folder / "store"
        data_dir.mkdir()
        proc = start_store_subprocess(url, data_dir)
        try:
            result = await end_to_end(url, events, args.chunk, proc, server._proc.pid)
            result["baseline_js_publish_async_per_s"] = round(await baseline_js(url, bodies))
            out[sync] = result
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)
            await asyncio.to_thread(server.stop)
    return out


async def main_async(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out_sync: dict[str, Any] = {"bench": "ingest", "events": args.events, "chunk": args.chunk}
    if args.trickle is not None:
        server = EmbeddedNats(tmp / "nats", port=0, sync=NATS_DEFAULT_SYNC)
        url = await asyncio.to_thread(server.start)
        (tmp / "store").mkdir()
        try:
            return {
                "bench": "ingest",
                **await trickle(url, tmp / "store", args.trickle, args.seconds),
            }
        finally:
            await asyncio.to_thread(server.stop)
    if args.sync is not None:
        out_sync["sync"] = await sync_compare(args, tmp)
        out_sync["cpus"] = os.cpu_count()
        return out_sync
    server = EmbeddedNats(tmp / "nats", port=0, sync=NATS_DEFAULT_SYNC)
    url = await asyncio.to_thread(server.start)
    proc: subprocess.Popen[bytes] | None = None
    assert server._proc is not None
    server_pid = server._proc.pid
    out: dict[str, Any] = {"bench": "ingest", "store": args.store, "events": args.events}
    out["chunk"] = args.chunk
    try:
        data_dir = tmp / "store"
        data_dir.mkdir()
        if not args.catchup_only:
            events = list(workload.events(args.events, start=time.time()))
            if args.store == "subprocess":
                proc = start_store_subprocess(url, data_dir)
                result = await end_to_end(url, events, args.chunk, proc, server_pid)
                proc.terminate()
                await asyncio.to_thread(proc.wait, 20)
                proc = None
            else:
                result = await run_inproc(url, data_dir, events, args.chunk, server_pid)
            out.update(result)
        if args.store == "subprocess" and args.catchup:
            more = list(workload.events(args.events, seed=8, start=time.time()))
            out.update(await store_catchup(url, data_dir, more, args.chunk, args.profile))
        if not args.catchup_only:
            out.update(await ceilings(url, tmp, events, args.sqlite_batch, out["events_per_s"]))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        await asyncio.to_thread(server.stop)
    out["cpus"] = os.cpu_count()
    return out


async def ceilings(
    url: str, tmp: Path, events: list[Any], sqlite_batch: int, eps: float
) -> dict[str, Any]:
    """Raw publish and raw sqlite rates of the same events, and the end-to-end
    rate's ratios to them (run after the end-to-end measurement)."""
    bodies = [(e.type, encode_event(e), e.id) for e in events]
    js_rate = await baseline_js(url, bodies)
    rows = [
        (e.id, e.type, e.key, e.ts, body) for e, (_, body, _) in zip(events, bodies, strict=True)
    ]
    sqlite_rate = await asyncio.to_thread(baseline_sqlite, tmp / "baseline.db", rows, sqlite_batch)
    return {
        "baseline_js_publish_async_per_s": round(js_rate),
        "baseline_sqlite_rows_per_s": round(sqlite_rate),
        "sqlite_batch": sqlite_batch,
        "ratio_vs_js_publish_async": round(eps / js_rate, 3),
        "ratio_vs_sqlite": round(eps / sqlite_rate, 3),
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
    p.add_argument(
        "--catchup-only",
        action="store_true",
        help="only the catch-up measurement and its raw-consumer baseline",
    )
    p.add_argument("--profile", type=Path, help="cProfile stats of the catching-up store")
    p.add_argument(
        "--sync",
        metavar="always|DURATION",
        help=f"compare the end-to-end rate at sync_interval {NATS_DEFAULT_SYNC} (nats-server's "
        "default) with this value, in the same run, instead of the other measurements",
    )
    p.add_argument(
        "--trickle", type=float, metavar="RATE", help="store CPU per event at RATE events/s"
    )
    p.add_argument("--seconds", type=float, default=5.0, help="length of the --trickle run")
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
