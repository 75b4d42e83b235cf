"""Lifecycle benchmark: synthetic zero-length jobs from submit to ``job.succeeded``.

    python bench/lifecycle.py [--jobs 2000] [--http-jobs 300] [--window 256]
                              [--max-running 64] [--sync always|2m]

Starts an embedded nats-server and ``gpuroute serve`` store, advisor,
scheduler and gateway as processes of their own (no budget service: each job
is ``job.queued`` ``no_budget`` and local slots, ``--max-running``, bound what
runs). Submits ``--jobs`` jobs (``kind: other``, executor ``synthetic``,
``duration_s: 0``) over NATS (``gpuroute.scheduler.submit``) with at most
``--window`` requests in flight, then ``--http-jobs`` through the gateway's
``POST /api/jobs``, and times each job from its submit to its ``job.started``
and ``job.succeeded`` (core subscriptions on those subjects). In the same run
it measures the raw ceiling: nats-py ``js.publish_async`` of six event-sized
messages per job (a job is submitted, advised, queued, started, succeeded,
plus a progress) to a fresh stream, as jobs/s.

``BENCH_PROFILE_SCHEDULER=FILE`` runs the scheduler under cProfile (CPU time,
stats in FILE; any service: ``BENCH_PROFILE_<NAME>``). ``cpu_ms_per_job`` is
the CPU time each process spent on the measured NATS run divided by its jobs
(this process is ``client``): on 2 cores shared by every process, 2000 / the
sum bounds jobs/s, and 1000 / the scheduler's (one process, one core) too.
``--sync``: ``always`` is what ``up`` runs (an fsync before every ack: the
disk bounds the raw ceiling); ``2m`` leaves the CPU as the bound. Prints one
JSON object; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import nats.errors
import psutil
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import workload

from schemas import decode_event
from schemas.scheduler import SUBMIT
from services.runtime.natsserver import EmbeddedNats

EVENTS_PER_JOB = 6
PROFILED = """
import cProfile, runpy, sys, time
out, sys.argv = sys.argv[1], sys.argv[2:]
profile = cProfile.Profile(time.process_time)  # CPU time: other processes' turns do not count
try:
    profile.runcall(runpy.run_path, sys.argv[0], run_name="__main__")
finally:
    profile.dump_stats(out)
"""
"""Runs a service under cProfile timing CPU, not wall time (the box is shared)."""
BODY = {"kind": "other", "executor": "synthetic", "payload": {"duration_s": 0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    """Submit, started and succeeded times (perf_counter) of every job by id."""

    def __init__(self) -> None:
        self.submitted: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.all_done = asyncio.Event()
        self.expect = 0

    async def on_event(self, msg: Msg) -> None:
        now = time.perf_counter()
        key = decode_event(msg.data).key
        if msg.subject == "job.started":
            self.started.setdefault(key, now)
        else:
            self.succeeded.setdefault(key, now)
            if self.expect and len(self.succeeded) >= self.expect:
                self.all_done.set()

    def figures(self, ids: list[str], t0: float) -> dict[str, Any]:
        def pct(values: list[float], p: float) -> float:
            return round(statistics.quantiles(values, n=100)[p - 1] * 1000, 1)

        start = [self.started[i] - self.submitted[i] for i in ids if i in self.started]
        done = [self.succeeded[i] - self.submitted[i] for i in ids if i in self.succeeded]
        last = max(self.succeeded[i] for i in ids)
        return {
            "jobs": len(ids), "seconds": round(last - t0, 3),
            "jobs_per_s": round(len(ids) / (last - t0), 1),
            "submit_to_started_ms": {"p50": pct(start, 50), "p99": pct(start, 99)},
            "submit_to_succeeded_ms": {"p50": pct(done, 50), "p99": pct(done, 99)},
        }  # fmt: skip


class Cpu:
    """CPU seconds (user + system) of named processes between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        times = {name: p.cpu_times() for name, p in self.procs.items()}
        return {name: t.user + t.system for name, t in times.items()}

    def ms_per(self, n: int) -> dict[str, float]:
        now = self._read()
        used = {name: round((now[name] - self.start[name]) * 1000 / n, 3) for name in now}
        return {**used, "total": round(sum(used.values()), 3)}


async def over_nats(nc: nats.NATS, clock: Clock, n: int, window: int) -> dict[str, Any]:
    body = msgspec.json.encode(BODY)
    gate = asyncio.Semaphore(window)
    ids: list[str] = []

    async def one() -> None:
        async with gate:
            sent = time.perf_counter()
            reply = await nc.request(SUBMIT, body, timeout=60)
            if reply.headers and reply.headers.get("Nats-Service-Error"):
                raise SystemExit(f"submit refused: {reply.headers}")
            job_id = json.loads(reply.data)["job_id"]
            clock.submitted[job_id] = sent
            ids.append(job_id)

    clock.expect, clock.all_done = len(clock.succeeded) + n, asyncio.Event()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.wait_for(clock.all_done.wait(), 120)
    return clock.figures(ids, t0)


async def over_http(base: str, clock: Clock, n: int, window: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(window)
    ids: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=window)) as session:

        async def one() -> None:
            async with gate:
                sent = time.perf_counter()
                async with session.post(base + "/api/jobs", json=BODY) as r:
                    answer = await r.json()
                    if r.status >= 300:
                        raise SystemExit(f"POST /api/jobs: {r.status} {answer}")
                clock.submitted[answer["job_id"]] = sent
                ids.append(answer["job_id"])

        clock.expect, clock.all_done = len(clock.succeeded) + n, asyncio.Event()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        await asyncio.wait_for(clock.all_done.wait(), 120)
    return clock.figures(ids, t0)


async def baseline(nc: nats.NATS, jobs: int) -> dict[str, Any]:
    """Raw ``js.publish_async`` of ``EVENTS_PER_JOB`` messages of ~400 bytes per job."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_LIFECYCLE", subjects=["benchlc.>"],
                                     storage=StorageType.FILE, duplicate_window=120.0))  # fmt: skip
    body = b"x" * 400
    t0 = time.perf_counter()
    for i in range(jobs * EVENTS_PER_JOB):
        await js.publish_async("benchlc.job", body, headers={"Nats-Msg-Id": f"b{i}"})
    await js.publish_async_completed()
    elapsed = time.perf_counter() - t0
    await js.delete_stream("BENCH_LIFECYCLE")
    return {"events_per_s": round(jobs * EVENTS_PER_JOB / elapsed),
            "jobs_per_s": round(jobs / elapsed, 1)}  # fmt: skip


async def wait_submit(nc: nats.NATS) -> None:
    body = msgspec.json.encode(BODY)
    for _ in range(600):
        try:
            reply = await nc.request(SUBMIT, body, timeout=5)
            if not (reply.headers and reply.headers.get("Nats-Service-Error")):
                return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the scheduler did not accept a job within 60 s")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gpuroute-bench-lc-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0, sync=args.sync)
        url = server.start()
        gpuroute = str(Path(sys.executable).parent / "gpuroute")
        common = ("--nats-url", url, "--data-dir", str(Path(tmp) / "data"), "--log-level", "ERROR")
        env = {**os.environ, "GPUROUTE_SCHEDULER_MAX_RUNNING": str(args.max_running)}
        http_port = free_port()
        procs: dict[str, subprocess.Popen[bytes]] = {}

        def service(name: str, *extra: str) -> None:
            prof = os.environ.get(f"BENCH_PROFILE_{name.upper()}")
            pre = (sys.executable, "-c", PROFILED, prof, gpuroute) if prof else (gpuroute,)
            procs[name] = subprocess.Popen([*pre, "serve", name, *common, *extra], env=env,
                                           stdout=subprocess.DEVNULL)  # fmt: skip

        out: dict[str, Any] = {"bench": "lifecycle", "cpus": os.cpu_count(),
                               "max_running": args.max_running, "window": args.window,
                               "sync": args.sync}  # fmt: skip
        try:
            for name in ("store", "advisor", "scheduler"):
                service(name)
            service("gateway", "--http-port", str(http_port))
            nc = await nats.connect(url)
            clock = Clock()
            for subject in ("job.started", "job.succeeded"):
                await nc.subscribe(subject, cb=clock.on_event)
            await wait_submit(nc)
            await over_nats(nc, clock, min(200, args.jobs), args.window)  # warm-up
            nats_pid = [c.pid for c in psutil.Process().children() if "nats" in c.name()]
            cpu = Cpu({**{name: p.pid for name, p in procs.items()}, "nats-server": nats_pid[0],
                       "client": os.getpid()})  # fmt: skip
            out["nats"] = await over_nats(nc, clock, args.jobs, args.window)
            out["nats"]["cpu_ms_per_job"] = cpu.ms_per(args.jobs)
            if args.http_jobs:
                out["http"] = await over_http(f"http://127.0.0.1:{http_port}", clock,
                                              args.http_jobs, min(args.window, 64))  # fmt: skip
            out["baseline_js_publish_async"] = await baseline(nc, args.jobs)
            out["ratio_vs_baseline"] = round(
                out["nats"]["jobs_per_s"] / out["baseline_js_publish_async"]["jobs_per_s"], 3
            )
            await nc.drain()
        finally:
            workload.stop_all(procs.values(), 30)
            server.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000, help="jobs submitted over NATS")
    p.add_argument("--http-jobs", type=int, default=300, help="jobs through POST /api/jobs")
    p.add_argument("--window", type=int, default=256, help="submits in flight at most")
    p.add_argument("--max-running", type=int, default=64, help="[scheduler] max_running")
    p.add_argument("--sync", default="always",
                   help="JetStream sync_interval: always (fsync before each ack, as up runs) "
                        "or a duration such as 2m (the CPU bounds the raw ceiling)")  # fmt: skip
    print(json.dumps(asyncio.run(bench(p.parse_args())), indent=2))


if __name__ == "__main__":
    main()
