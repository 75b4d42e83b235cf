"""Advise requests over NATS request/reply, beside a raw nats-py echo.

    python bench/advise.py [--seconds 3] [--inflight 64] [--rounds 2]

Starts an embedded nats-server, the store and the advisor as their own
processes (``gpuroute serve store|advisor``, as deployed), and a raw nats-py
echo responder in a third process. Then, from this process, keeps
``--inflight`` requests in flight against each in turn (echo, advise, echo,
advise, ... after a warm-up of each) and prints ONE JSON object: requests,
throughput, p50/p99 latency per target, and ``ratio`` = advise throughput /
echo throughput (goal: >= 0.5).

The advise requests cycle through a realistic mix of 8 job specs (image,
video, llm, speech; no debug) with ``features.enable_compute`` on, so each
decision prices every registered provider; the echo request carries the same
bytes. The advisor keeps each spec's encoded reply until its state next
changes, so repeated specs are answered from that cache: ``advise_unique_specs``
measures the other extreme, every request a spec never seen (every decision
computed), and ``ratio_unique_specs`` its ratio.

``BENCH_PROFILE_ADVISOR=FILE`` runs the advisor under cProfile (stats in FILE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import workload  # noqa: E402

from schemas.advisor import ADVISE_SUBJECT, FLAGS_SET_SUBJECT  # noqa: E402
from services.runtime.natsserver import EmbeddedNats  # noqa: E402

ECHO_SUBJECT = "bench.echo"
SPECS: list[dict[str, object]] = [
    {"width": 1024, "height": 1024},
    {"width": 512, "height": 512, "steps": 20},
    {"width": 1024, "height": 1024, "batch": 2, "model": "sdxl"},
    {"kind": "video", "width": 512, "height": 512, "frames": 24},
    {"kind": "llm", "model": "llama-3-8b", "tokens": 1000},
    {"kind": "speech", "model": "whisper-large-v3", "audio_seconds": 120},
    {"width": 2048, "height": 2048, "max_cost_usd": 0.05},
    {"kind": "image", "model": "flux-dev", "prefer": "modal"},
]
PAYLOADS = [msgspec.json.encode(s) for s in SPECS]


async def echo_server(url: str) -> None:
    """The raw baseline: a plain nats-py subscription that answers with the request."""
    nc = await nats.connect(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def respond(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(ECHO_SUBJECT, queue="echo", cb=respond)
    await nc.flush()
    print("ready", flush=True)
    await stop.wait()
    await nc.drain()


def mixed(n: int) -> bytes:
    return PAYLOADS[n % len(PAYLOADS)]


def unique(n: int) -> bytes:
    """A spec never asked before (no reply can be reused): the width walks 64..16383."""
    spec = {**SPECS[n % len(SPECS)], "width": 64 + n % 16320, "height": 512}
    return msgspec.json.encode(spec)


async def measure(
    nc: nats.NATS,
    subject: str,
    seconds: float,
    inflight: int,
    payload: Callable[[int], bytes] = mixed,
) -> tuple[int, int, float, list[float]]:
    """(ok, errors, elapsed s, latencies s) of ``inflight`` request loops for ``seconds``."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    deadline = loop.time() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        n = i
        while loop.time() < deadline:
            body = payload(n)
            n += inflight
            t0 = time.perf_counter()
            msg = await nc.request(subject, body, timeout=10)
            latencies.append(time.perf_counter() - t0)
            if msg.headers and "Nats-Service-Error-Code" in msg.headers:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(inflight)))
    return len(latencies) - errors, errors, time.perf_counter() - start, latencies


def summary(runs: list[tuple[int, int, float, list[float]]]) -> dict[str, float | int]:
    ok = sum(r[0] for r in runs)
    errors = sum(r[1] for r in runs)
    elapsed = sum(r[2] for r in runs)
    lat = sorted(x for r in runs for x in r[3])
    return {
        "requests": ok,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "throughput_rps": round(ok / elapsed, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
    }


def spawn(*args: str, **kw: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, env=env, **kw)  # type: ignore[call-overload, no-any-return]


async def wait_ready(nc: nats.NATS) -> None:
    """Until the advisor answers an advise request (it first rebuilds and seeds)."""
    for _ in range(300):
        try:
            msg = await nc.request(ADVISE_SUBJECT, b"{}", timeout=1)
            if not (msg.headers and "Nats-Service-Error-Code" in msg.headers):
                return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the advisor did not answer within 30 s")


async def bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gpuroute-bench-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0)
        url = server.start()
        gpuroute = str(Path(sys.executable).parent / "gpuroute")
        common = ("--nats-url", url, "--data-dir", str(Path(tmp) / "data"), "--log-level", "ERROR")
        procs = [spawn(gpuroute, "serve", "store", *common)]
        try:
            await asyncio.sleep(0.5)  # the store creates the streams
            prof = os.environ.get("BENCH_PROFILE_ADVISOR")
            pre = (sys.executable, "-m", "cProfile", "-o", prof, gpuroute) if prof else (gpuroute,)
            procs.append(spawn(*pre, "serve", "advisor", *common))
            echo = spawn(sys.executable, __file__, "--echo-server", url, stdout=subprocess.PIPE)
            procs.append(echo)
            assert echo.stdout is not None
            await asyncio.to_thread(echo.stdout.readline)
            nc = await nats.connect(url)
            await wait_ready(nc)
            flags = msgspec.json.encode({"flags": {"features.enable_compute": True}})
            await nc.request(FLAGS_SET_SUBJECT, flags, timeout=10)
            for subject in (ECHO_SUBJECT, ADVISE_SUBJECT):  # warm-up
                await measure(nc, subject, 1.0, args.inflight)
            echo_runs, advise_runs, unique_runs = [], [], []
            for _ in range(args.rounds):
                echo_runs.append(await measure(nc, ECHO_SUBJECT, args.seconds, args.inflight))
                advise_runs.append(await measure(nc, ADVISE_SUBJECT, args.seconds, args.inflight))
                unique_runs.append(
                    await measure(nc, ADVISE_SUBJECT, args.seconds, args.inflight, unique)
                )
            await nc.drain()
        finally:
            workload.stop_all(procs, 10)
            server.stop()
    e, a, u = summary(echo_runs), summary(advise_runs), summary(unique_runs)
    ratio = round(float(a["throughput_rps"]) / float(e["throughput_rps"]), 3)
    return {
        "bench": "advise",
        "inflight": args.inflight,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "echo": e,
        "advise": a,
        "advise_unique_specs": u,
        "ratio": ratio,
        "ratio_unique_specs": round(float(u["throughput_rps"]) / float(e["throughput_rps"]), 3),
        "goal": 0.5,
        "meets_goal": ratio >= 0.5,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per measured round and target")
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--echo-server", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_server:
        asyncio.run(echo_server(args.echo_server))
        return
    print(json.dumps(asyncio.run(bench(args))))


if __name__ == "__main__":
    main()
