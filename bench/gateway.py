"""Gateway throughput over HTTP, beside an aiohttp hello-world in the same run.

    python bench/gateway.py [--seconds 3] [--clients 32] [--rounds 2] [--events 2000]

Starts an embedded nats-server, the store, the advisor and the gateway as
their own processes (``gpuroute serve ...``, as deployed), publishes
``--events`` realistic job events, and an aiohttp hello-world server in a
fourth process. Then ``--clients`` concurrent HTTP clients (one aiohttp
session, keep-alive) run against each target in turn for ``--seconds``,
``--rounds`` times (after a warm-up of each): ``GET /hello``,
``GET /api/events?limit=100`` and ``POST /api/compute/advise`` (a mix of 8 job
specs, compute enabled). Prints ONE JSON object: req/s, p50/p99 per target
and each gateway route's ratio to the hello-world (goal: >= 0.5 for both),
and ``cpu_us_per_request``: CPU microseconds of each process (the benchmark's
own clients, nats-server, store, advisor, gateway, hello-world) per answered
request of each target, which says where the time goes on a loaded machine.
A non-2xx answer counts as an error, not a request.

``BENCH_PROFILE_GATEWAY=FILE`` runs the gateway under cProfile (stats in FILE
when it stops); ``BENCH_PROFILE_STORE=FILE`` does the same for the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec
import nats
import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import workload  # noqa: E402
from advise import PAYLOADS, spawn, summary  # noqa: E402

from schemas.advisor import FLAGS_SET_SUBJECT  # noqa: E402
from services.runtime.bus import Bus  # noqa: E402
from services.runtime.natsserver import EmbeddedNats  # noqa: E402

Run = tuple[int, int, float, list[float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hello_server(port: int) -> None:
    """The raw baseline: one aiohttp handler answering a small JSON body."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(body=b'{"ok":true,"hello":"world"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/hello", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def measure(
    session: aiohttp.ClientSession, method: str, url: str, seconds: float, clients: int
) -> Run:
    """(ok, errors, elapsed s, latencies s) of ``clients`` request loops."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    deadline = loop.time() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        n = i
        while loop.time() < deadline:
            body = PAYLOADS[n % len(PAYLOADS)] if method == "POST" else None
            n += clients
            t0 = time.perf_counter()
            async with session.request(method, url, data=body) as resp:
                await resp.read()
                if resp.status >= 300:
                    errors += 1
                    continue
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), errors, time.perf_counter() - start, latencies


async def wait_http(session: aiohttp.ClientSession, method: str, url: str) -> None:
    for _ in range(600):
        try:
            async with session.request(method, url, data=PAYLOADS[0]) as resp:
                await resp.read()
                if resp.status < 300:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"{method} {url} did not answer 2xx within 60 s")


async def bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gpuroute-bench-gw-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0)
        url = server.start()
        gpuroute = str(Path(sys.executable).parent / "gpuroute")
        common = ("--nats-url", url, "--data-dir", str(Path(tmp) / "data"), "--log-level", "ERROR")
        http_port, hello_port = free_port(), free_port()

        def service(name: str, *extra: str) -> subprocess.Popen[bytes]:
            prof = os.environ.get(f"BENCH_PROFILE_{name.upper()}")
            pre = (sys.executable, "-m", "cProfile", "-o", prof, gpuroute) if prof else (gpuroute,)
            return spawn(*pre, "serve", name, *common, *extra)

        procs = [service("store")]
        try:
            bus = await Bus.connect(url, source="bench")
            await bus.ensure_streams()
            await bus.publish_many(workload.events(args.events, start=time.time()))
            await bus.close()
            procs.append(service("advisor"))
            procs.append(service("gateway", "--http-port", str(http_port)))
            procs.append(spawn(sys.executable, __file__, "--hello-server", str(hello_port)))
            nc = await nats.connect(url)
            flags = msgspec.json.encode({"flags": {"features.enable_compute": True}})
            base = f"http://127.0.0.1:{http_port}"
            targets = {
                "hello": ("GET", f"http://127.0.0.1:{hello_port}/hello"),
                "events": ("GET", f"{base}/api/events?limit=100"),
                "advise": ("POST", f"{base}/api/compute/advise"),
            }
            conn = aiohttp.TCPConnector(limit=args.clients * 3)
            headers = {"Content-Type": "application/json"}
            async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
                await wait_http(session, *targets["hello"])
                await wait_http(session, *targets["events"])
                for _ in range(300):  # the advisor first rebuilds, then takes the flag
                    try:
                        await nc.request(FLAGS_SET_SUBJECT, flags, timeout=1)
                        break
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        await asyncio.sleep(0.1)
                await wait_http(session, *targets["advise"])
                for method, target in targets.values():  # warm-up
                    await measure(session, method, target, 1.0, args.clients)
                runs: dict[str, list[Run]] = {name: [] for name in targets}
                assert server._proc is not None
                pids = {
                    "client": os.getpid(),
                    "nats": server._proc.pid,
                    "store": procs[0].pid,
                    "advisor": procs[1].pid,
                    "gateway": procs[2].pid,
                    "hello": procs[3].pid,
                }
                cpu: dict[str, dict[str, float]] = {n: dict.fromkeys(pids, 0.0) for n in targets}
                for _ in range(args.rounds):
                    for name, (method, target) in targets.items():
                        before = cpu_seconds(pids)
                        run = await measure(session, method, target, args.seconds, args.clients)
                        runs[name].append(run)
                        for proc, used in cpu_seconds(pids).items():
                            cpu[name][proc] += used - before[proc]
            await nc.drain()
        finally:
            workload.stop_all(procs, 20)
            server.stop()
    out = {name: summary(r) for name, r in runs.items()}
    per_request = {
        name: {
            proc: round(used * 1e6 / max(1, sum(r[0] for r in runs[name])))
            for proc, used in cpu[name].items()
        }
        for name in runs
    }
    hello = float(out["hello"]["throughput_rps"])
    ratios = {f"ratio_{n}": round(float(out[n]["throughput_rps"]) / hello, 3) for n in out}
    del ratios["ratio_hello"]
    return {
        "bench": "gateway",
        "clients": args.clients,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "events_stored": args.events,
        **out,
        **ratios,
        "goal": 0.5,
        "meets_goal": all(r >= 0.5 for r in ratios.values()),
        "cpu_us_per_request": per_request,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far."""
    out = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = float(t.user + t.system)
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--hello-server":
        hello_server(int(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--events", type=int, default=2_000, help="job events stored before the run")
    print(json.dumps(asyncio.run(bench(p.parse_args()))))


if __name__ == "__main__":
    main()
