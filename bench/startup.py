"""Start-up benchmark: ``gpuroute up`` on a log of 1,000,000 events, beside an empty one.

    python bench/startup.py [--events N] [--cache DIR] [--timeout S]

The log: ``--events`` events, 9 in 10 ``telemetry.sampled`` of this machine's
node (a reading every ~10 s, as the telemetry service stores them when the
GPU is busy), the rest job lifecycle events (``workload.py``) and a few
provider and flag events. It is written **directly into events.db** with
``sqlite3`` in the store's own schema (``services/store/eventlog.py``), bodies
from ``encode_event``, with no ``tracking`` row: the state of an install
whose JetStream stream no longer holds these events (the stream keeps 7 days,
``[nats] stream_max_age_s``; the log keeps everything), so the store adopts
the stream it finds and has nothing to catch up on. Publishing a million
events through NATS once would take minutes on a small machine and measure
ingest, which ``bench/ingest.py`` does. The file is built once and cached
(``--cache``, default ``/tmp/gpuroute-bench-startup``); each run copies it
into a fresh data directory.

Then, in one run, each start is timed from the moment ``gpuroute up`` is
spawned until ``GET /health`` first answers 200 and until
``POST /api/compute/advise`` first answers 200 (not 503 "still loading"):

- ``warm-up`` then ``empty``: a fresh, empty data directory (the warm-up
  writes Python's bytecode cache under ``--cache``, as a pip install has it;
  ``--no-bytecode-cache`` leaves the environment's setting);
- ``first``: the 1M log, no snapshots, no JetStream state yet; stopped with SIGTERM
  (a clean stop saves snapshots);
- ``restart``: the same directory again (snapshots present); then SIGKILL of
  the whole process group (``up`` and its nats-server);
- ``after_sigkill``: the same directory after that crash;
- ``cold``: snapshots deleted, JetStream state present.

Prints ONE JSON object (also the load average before and after, and how the
log was made); asserts nothing. Goal (issue 10): both within 2 s on the log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import replay  # noqa: E402
import workload  # noqa: E402

from schemas import Event, make_event  # noqa: E402
from schemas.flags import ENABLE_COMPUTE, ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged  # noqa: E402
from schemas.telemetry import GpuDevice, HostStats, TelemetrySample  # noqa: E402
from services.runtime.clock import ManualClock  # noqa: E402
from services.runtime.config import Config  # noqa: E402
from services.runtime.ids import IdGenerator  # noqa: E402

SPEC = b'{"width": 1024, "height": 1024, "steps": 20}'
POLL_S = 0.02
JSON = {"Content-Type": "application/json"}


def telemetry(n: int, node: str, start: float) -> Iterator[Event]:
    """``n`` samples of ``node``, 10 s apart, with readings that move."""
    clock = ManualClock(start)
    ids = IdGenerator(clock, randbytes=lambda k: bytes(k))
    for i in range(n):
        clock.advance(10.0)
        eid = ids.new()
        used = 4000 + (i * 37) % 18000
        gpu = GpuDevice(
            index=0, name="NVIDIA GeForce RTX 4090", uuid="GPU-5e1c0c1a-bench",
            memory_total_mib=24564, memory_used_mib=used, memory_free_mib=24564 - used,
            utilization_gpu_pct=(i * 13) % 101, utilization_memory_pct=(i * 7) % 101,
            temperature_c=40 + i % 40, power_draw_w=float(80 + i % 300),
        )  # fmt: skip
        host = HostStats(cpu_percent=float(i % 100), cpu_count=16, ram_total_mib=65536,
                         ram_available_mib=20000 + (i * 11) % 40000)  # fmt: skip
        sample = TelemetrySample(
            sample_id=eid, ts=clock.now(), gpus=(gpu,), host=host, driver_version="550.54.15",
            node=node, trigger="keep-alive",
        )  # fmt: skip
        yield make_event(sample, id=eid, key=node, ts=clock.now(), source="telemetry")


def log_events(n: int, node: str) -> Iterator[Event]:
    """``n`` events: 9 in 10 telemetry, then jobs, with a flag change every 100k."""
    start = 1_767_000_000.0
    n_tel = n * 9 // 10
    tel, jobs = telemetry(n_tel, node, start), workload.events(n - n_tel, start=start)
    clock = ManualClock(start)
    ids = IdGenerator(clock, randbytes=lambda k: b"\x01" * k)
    for i in range(n):
        if i % 100_000 == 99_999:
            clock.advance(1.0)
            flags = {ENABLE_COMPUTE: True, ENABLE_PUBLIC_GPU_ADAPTERS: i % 200_000 == 99_999}
            flag = FlagsChanged(flags=flags)
            yield make_event(flag, id=ids.new(), key="flags", ts=clock.now(), source="bench")
        elif i % 10 == 9:
            yield next(jobs)
        else:
            yield next(tel)


def build(path: Path, n: int, node: str) -> float:
    """Write the log at ``path`` (through a temporary name); seconds."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    seconds = replay.build(tmp, n, events=log_events(n, node))
    tmp.rename(path)
    return seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def first_200(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, deadline: float
) -> tuple[float | None, dict[int | str, int | str]]:
    """Seconds (monotonic) of the first 200, and the count of each other answer
    (0: no connection) with the first 160 bytes of the last such body."""
    seen: dict[int | str, int | str] = {}
    while time.monotonic() < deadline:
        try:
            async with session.request(method, url, data=body, headers=JSON) as r:
                text = await r.read()
                if r.status == 200:
                    return time.monotonic(), seen
                seen[r.status] = int(seen.get(r.status, 0)) + 1
                seen["last"] = text[:160].decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError):
            seen[0] = int(seen.get(0, 0)) + 1  # not listening yet
        await asyncio.sleep(POLL_S)
    return None, seen


def environment(pycache: Path | None) -> dict[str, str]:
    """The environment of ``up``: with ``pycache``, bytecode is cached there (as a
    pip install has it) even where PYTHONDONTWRITEBYTECODE is set (this sandbox:
    then ~130 modules are compiled from source at every start, ~0.4 s)."""
    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


async def start(
    data: Path, timeout: float, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    """Spawn ``gpuroute up`` on ``data``; time /health and advise from the spawn."""
    port = free_port()
    gpuroute = str(Path(sys.executable).parent / "gpuroute")
    args = [gpuroute, "up", "--data-dir", str(data), "--nats-port", "0",
            "--http-port", str(port), "--log-level", "WARNING"]  # fmt: skip
    t0 = time.monotonic()
    with (data.parent / f"{data.name}.stderr").open("ab") as stderr:
        proc = subprocess.Popen(  # noqa: ASYNC220 (the spawn is the start being timed)
            args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
    base = f"http://127.0.0.1:{port}"
    client_timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        deadline = t0 + timeout
        (health, h_seen), (advise, a_seen) = await asyncio.gather(
            first_200(session, "GET", base + "/health", None, deadline),
            first_200(session, "POST", base + "/api/compute/advise", SPEC, deadline),
        )
    figures: dict[str, object] = {
        "health_s": None if health is None else round(health - t0, 3),
        "advise_s": None if advise is None else round(advise - t0, 3),
        "health_other": h_seen, "advise_other": a_seen,
    }  # fmt: skip
    return proc, figures


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """SIGTERM ``up`` (a clean stop), or SIGKILL its whole process group (a crash)."""
    if sig == signal.SIGKILL:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if sig == signal.SIGTERM:
        return
    # wait for the group's nats-server to go too, so its port and lock are free
    for _ in range(200):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


async def run(args: argparse.Namespace) -> dict[str, object]:
    node = Config().telemetry.node_id()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    cached = cache / f"events-{args.events}-{node}.db"
    result: dict[str, object] = {
        "events": args.events, "node": node,
        "log": "events.db written directly in the store's schema (sqlite3, encode_event), "
               "no tracking row: an install whose stream aged out; cached at " + str(cached),
        "load_before": os.getloadavg(), "cpus": os.cpu_count(),
    }  # fmt: skip
    if not cached.exists():
        result["build_s"] = round(build(cached, args.events, node), 1)
    result["log_bytes"] = cached.stat().st_size
    env = environment(None if args.no_bytecode_cache else cache / "pycache")
    result["bytecode"] = env.get("PYTHONPYCACHEPREFIX", "as the environment has it")
    cases: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gpuroute-startup-") as tmp:
        for case in ("warm-up", "empty"):  # the warm-up writes the bytecode cache
            empty = Path(tmp) / case
            empty.mkdir(mode=0o700)
            proc, cases[case] = await start(empty, args.timeout, env)
            stop(proc, signal.SIGTERM)
        data = Path(tmp) / "full"
        data.mkdir(mode=0o700)
        shutil.copyfile(cached, data / "events.db")
        os.chmod(data / "events.db", 0o600)
        plan = (("first", signal.SIGTERM), ("restart", signal.SIGKILL),
                ("after_sigkill", signal.SIGTERM), ("cold", signal.SIGTERM))  # fmt: skip
        for case, then in plan:
            if case == "cold":
                shutil.rmtree(data / "snapshots", ignore_errors=True)
            proc, cases[case] = await start(data, args.timeout, env)
            stop(proc, then)
    result["cases"] = cases
    result["load_after"] = os.getloadavg()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--cache", default="/tmp/gpuroute-bench-startup")
    p.add_argument("--timeout", type=float, default=120.0, help="per start, seconds")
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE as it is (compile at every start)",
    )
    print(json.dumps(asyncio.run(run(p.parse_args())), indent=2))


if __name__ == "__main__":
    main()
