"""Budget register -> start -> finish cycles over NATS, beside a raw nats-py echo.

    python bench/budget.py [--seconds 3] [--inflight 64] [--rounds 2] [--sync always|2m]

Starts an embedded nats-server, the store and the budget service as their own
processes (``gpuroute serve store|budget``, as deployed, budgets on), and the
raw echo responder of ``bench/advise.py`` in a third. Then, from this process,
keeps ``--inflight`` cycles in flight (each: register a job with a ``perf``
block, start it, finish it: three requests, three ``budget.state`` events)
and, in turn, ``--inflight`` echo cycles: the same loop, the same three
bodies, each sent to the echo (so both sides pay the same client, the same
three round trips per cycle and the same in-flight). Prints ONE JSON object:
echo cycles/s, budget cycles/s with p50/p99 of one cycle, ``ratio`` =
cycles/s / echo cycles/s (goal >= 0.3, p99 < 10 ms), ``ratio_per_echo_request``
= cycles/s / echo requests/s (a cycle against single echo requests: a
budget that cost nothing would score about 1/3 there), and the same cycles
with the profiler flag on (the service then times its own hot paths):
``profiler_cost`` = 1 - cycles/s with it / cycles/s without (goal < 0.05).
``cpu_us_per_cycle``: CPU microseconds (user + system) each process spent per
cycle during the rounds without the profiler flag (client: this process),
``echo_cpu_us_per_cycle`` the same per echo cycle, and the load average.
``jetstream_cycles``: the same loop where each of the three requests is a
JetStream publish of a 600-byte message that waits for its ack (a stream of
its own, the same ``--sync``): what three acknowledged writes per cycle cost
with no service at all, the floor of any budget that records a change before
answering it. ``recorded_echo_cycles``: the same cycles against a responder
that records each request as an event as big as the budget's (a
``job.advised``, which the budget does not follow) through
``Bus.send_many`` (the store consuming it) and answers once its burst is
acknowledged, pipelined as the budget is, with no decision, state or follower:
what recording a command before answering costs here with gpuroute's own
writer, so ``recorded_echo_ratio`` is the most a budget could score on this
machine (the budget's ``ratio`` / ``recorded_echo_ratio`` is what its
decisions leave of it).

Both loops are closed: each of the ``--inflight`` workers sends its next
request when the previous answer is in. By Little's law the mean cycle then
takes ``inflight`` / (cycles/s): at 64 in flight a p99 under 10 ms needs more
than 6,400 cycles/s (19,200 requests/s), more than the echo itself serves
here; ``--inflight 8`` shows the latency at a lighter load.

``BENCH_PROFILE_BUDGET=FILE`` runs the budget service under cProfile timing CPU,
not wall time (``bench/lifecycle.py``'s runner; stats in FILE).

``--fold-only N`` measures no NATS at all: the budget's decision alone
(``fold.decide`` of a register, start and finish, each change's record
wrapped in its event and encoded as the service does) while N other jobs run, in
microseconds per change: the part of a change that grows with the jobs tracked.

``--build-only N`` runs N register -> start -> finish cycles through the
service's own build path (``BudgetService`` on a client that never connects:
each request body encoded and decoded to its type, as the endpoint does but
without its size check, then decided and recorded, its event and answer
encoded) with 64 jobs running, and prints CPU microseconds per change. It is
the bench's case: no job waits, no asset, no telemetry. Its instruction count
does not drift with the machine's load as times do: run it under ``valgrind
--tool=callgrind`` at two values of N and divide the difference by 3 x their
difference (``docs/perf.md``, fifth pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
import workload  # noqa: E402
from advise import ECHO_SUBJECT, measure, spawn, summary  # noqa: E402
from gateway import cpu_seconds  # noqa: E402
from lifecycle import PROFILED  # noqa: E402

from schemas import encode_event, make_event  # noqa: E402
from schemas.budget import FINISH, REGISTER, SNAPSHOT, START  # noqa: E402
from schemas.flags import (  # noqa: E402
    ENABLE_PERF_BUDGETS,
    ENABLE_PERF_PROFILER_DASHBOARD,
    FlagsChanged,
)
from schemas.subjects import STREAM  # noqa: E402
from services.runtime.ids import IdGenerator  # noqa: E402
from services.runtime.natsserver import EmbeddedNats  # noqa: E402

CONFIG = """
[budget]
profile_flush_s = 1.0
[budget.limits]
max_running_jobs = 256
max_queue_depth = 10000
max_vram_mb = 4000000
max_mem_mb = 16000000
max_cpu_percent = 100
"""
ERROR = "Nats-Service-Error-Code"
RECORDING_SUBJECT = "bench.recording-echo"
T = TypeVar("T")
JS_SUBJECT = "benchjs.write"
JS_BODY = b"x" * 600


async def cycles(
    nc: nats.NATS,
    seconds: float,
    inflight: int,
    tag: str,
    echo: bool = False,
    jetstream: bool = False,
    recording: bool = False,
) -> tuple[int, int, float, list[float]]:
    """(cycles, errors, elapsed s, cycle latencies s) of ``inflight`` loops;
    ``echo``: the same requests, each to the echo subject."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    deadline = loop.time() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        n = 0
        while loop.time() < deadline:
            job = msgspec.json.encode({"job_id": f"{tag}-{i}-{n}"})
            reg = msgspec.json.encode({"job_id": f"{tag}-{i}-{n}", "job_type": "render",
                                       "perf": {"cpu_percent": 0.1, "ram_mb": 10,
                                                "vram_mb": 10}})  # fmt: skip
            n += 1
            t0 = time.perf_counter()
            for k, (subject, body) in enumerate(((REGISTER, reg), (START, job), (FINISH, job))):
                if jetstream:
                    await js.publish(JS_SUBJECT, JS_BODY, timeout=10,
                                     headers={"Nats-Msg-Id": f"{tag}-{i}-{n}-{k}"})  # fmt: skip
                    continue
                to = ECHO_SUBJECT if echo else RECORDING_SUBJECT if recording else subject
                msg = await nc.request(to, body, timeout=10)
                if msg.headers and ERROR in msg.headers:
                    errors += 1
                    break
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(inflight)))
    return len(latencies) - errors, errors, time.perf_counter() - start, latencies


async def recording_echo(url: str) -> None:
    """The floor of a service that records each command before it answers:
    requests gathered per burst by a plain nats-py subscription, each recorded
    as an event as big as the budget's (``Bus.send_many``, the store consuming
    it as it does the budget's; a ``job.advised``, which the budget does not
    follow), answered with its request once the burst is acknowledged. No
    decision, no state, no follower."""
    import signal

    from schemas.advisor import JobAdvised
    from services.runtime.bus import Bus

    bus = await Bus.connect(url, source="bench")
    stop, wake = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    queue: list[nats.aio.msg.Msg] = []
    reason = "x" * 560  # an event of ~750 bytes, as the budget's (its reason twice, its answer)

    async def on_request(msg: nats.aio.msg.Msg) -> None:
        queue.append(msg)
        wake.set()

    unacked: asyncio.Queue[tuple[Any, list[nats.aio.msg.Msg]]] = asyncio.Queue(32)

    async def writer() -> None:  # sends the next burst while earlier acks travel
        nonlocal queue
        while True:
            await wake.wait()
            wake.clear()
            burst, queue = queue, []
            events = [bus.event(JobAdvised(target="local", rule="bench", reason=reason),
                                key="bench") for _ in burst]  # fmt: skip
            await unacked.put((await bus.send_many(events), burst))

    async def answers() -> None:
        while True:
            sent, burst = await unacked.get()
            await sent.acked()
            for msg in burst:
                await bus.nc.publish(msg.reply, msg.data)

    await bus.nc.subscribe(RECORDING_SUBJECT, queue="rec", cb=on_request)
    await bus.nc.flush()
    tasks = [asyncio.create_task(writer()), asyncio.create_task(answers())]
    print("ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await bus.close()


async def charged(spent: dict[str, float], pids: dict[str, int], run: Awaitable[T]) -> T:
    """``await run``, adding the CPU seconds each process spent meanwhile to ``spent``."""
    before = cpu_seconds(pids)
    result = await run
    after = cpu_seconds(pids)
    for name in pids:
        spent[name] += after[name] - before[name]
    return result


async def set_flag(nc: nats.NATS, name: str, value: bool) -> None:
    ids = IdGenerator()
    event = make_event(FlagsChanged(flags={name: value}), id=ids.new(), key="flags",
                       ts=time.time(), source="bench")  # fmt: skip
    await nc.jetstream().publish("flags.changed", encode_event(event),
                                 headers={"Nats-Msg-Id": event.id})  # fmt: skip


async def wait_stream(nc: nats.NATS) -> None:
    """Until the store has created the event stream."""
    for _ in range(300):
        try:
            await nc.jetstream().stream_info(STREAM)
            return
        except nats.errors.Error:
            await asyncio.sleep(0.1)
    raise RuntimeError("the store did not create the stream within 30 s")


async def wait_ready(nc: nats.NATS) -> None:
    for _ in range(300):
        try:
            msg = await nc.request(SNAPSHOT, b"{}", timeout=1)
            if not (msg.headers and ERROR in msg.headers):
                return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the budget did not answer within 30 s")


async def bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gpuroute-bench-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats", port=0, sync=args.sync)
        url = server.start()
        config = Path(tmp) / "gpuroute.toml"
        config.write_text(CONFIG)
        gpuroute = str(Path(sys.executable).parent / "gpuroute")
        common = ("--nats-url", url, "--data-dir", str(Path(tmp) / "data"),
                  "--log-level", "ERROR", "--config", str(config))  # fmt: skip
        procs = [spawn(gpuroute, "serve", "store", *common)]
        try:
            nc = await nats.connect(url)
            await wait_stream(nc)
            await set_flag(nc, ENABLE_PERF_BUDGETS, True)
            prof = os.environ.get("BENCH_PROFILE_BUDGET")
            pre = (sys.executable, "-c", PROFILED, prof, gpuroute) if prof else (gpuroute,)
            procs.append(spawn(*pre, "serve", "budget", *common))
            echo = spawn(sys.executable, str(ROOT / "bench" / "advise.py"), "--echo-server",
                         url, stdout=subprocess.PIPE)  # fmt: skip
            procs.append(echo)
            recorder = spawn(sys.executable, __file__, "--recording-echo", url,
                             stdout=subprocess.PIPE)  # fmt: skip
            procs.append(recorder)
            for ready in (echo, recorder):
                assert ready.stdout is not None
                await asyncio.to_thread(ready.stdout.readline)
            await wait_ready(nc)
            await measure(nc, ECHO_SUBJECT, 1.0, args.inflight)  # warm-up
            await cycles(nc, 1.0, args.inflight, "warm")
            echo_runs, echo_cycle_runs, budget_runs, profiled_runs, js_runs = [], [], [], [], []
            recorded_runs = []
            await nc.jetstream().add_stream(name="BENCHJS", subjects=[JS_SUBJECT])
            nats_pid = [c.pid for c in psutil.Process().children() if "nats" in c.name()]
            pids = {"client": os.getpid(), "nats": nats_pid[0], "store": procs[0].pid,
                    "budget": procs[1].pid, "echo": echo.pid, "recorder": recorder.pid}  # fmt: skip
            spent = dict.fromkeys(pids, 0.0)
            echo_spent = dict.fromkeys(pids, 0.0)
            recorded_spent = dict.fromkeys(pids, 0.0)
            for r in range(args.rounds):
                echo_runs.append(await measure(nc, ECHO_SUBJECT, args.seconds, args.inflight))
                echo_cycle_runs.append(await charged(echo_spent, pids, cycles(
                    nc, args.seconds, args.inflight, f"echo{r}", echo=True)))  # fmt: skip
                js_runs.append(
                    await cycles(nc, args.seconds, args.inflight, f"js{r}", jetstream=True)
                )
                recorded_runs.append(await charged(recorded_spent, pids, cycles(
                    nc, args.seconds, args.inflight, f"rec{r}", recording=True)))  # fmt: skip
                await set_flag(nc, ENABLE_PERF_PROFILER_DASHBOARD, False)
                await asyncio.sleep(0.3)
                budget_runs.append(await charged(spent, pids, cycles(
                    nc, args.seconds, args.inflight, f"off{r}")))  # fmt: skip
                await set_flag(nc, ENABLE_PERF_PROFILER_DASHBOARD, True)
                await asyncio.sleep(0.3)
                profiled_runs.append(await cycles(nc, args.seconds, args.inflight, f"on{r}"))
            await nc.drain()
        finally:
            workload.stop_all(procs, 10)
            server.stop()
    e, c, p = summary(echo_runs), summary(budget_runs), summary(profiled_runs)
    ec, jc, rc = summary(echo_cycle_runs), summary(js_runs), summary(recorded_runs)
    done = max(1, sum(run[0] for run in budget_runs))
    per_cycle = {name: round(s / done * 1e6) for name, s in spent.items()}
    echo_done = max(1, sum(run[0] for run in echo_cycle_runs))
    echo_per_cycle = {name: round(s / echo_done * 1e6) for name, s in echo_spent.items()
                      if name in ("client", "nats", "echo")}  # fmt: skip
    recorded_done = max(1, sum(run[0] for run in recorded_runs))
    recorded_per_cycle = {name: round(s / recorded_done * 1e6) for name, s in
                          recorded_spent.items() if name != "echo"}  # fmt: skip
    ratio = round(float(c["throughput_rps"]) / float(ec["throughput_rps"]), 3)
    per_request = round(float(c["throughput_rps"]) / float(e["throughput_rps"]), 3)
    cost = round(1 - float(p["throughput_rps"]) / float(c["throughput_rps"]), 3)
    return {
        "bench": "budget",
        "inflight": args.inflight,
        "sync": args.sync,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "echo": e,
        "echo_cycles": ec,
        "jetstream_cycles": jc,
        "recorded_echo_cycles": rc,
        "recorded_echo_ratio": round(float(rc["throughput_rps"]) / float(ec["throughput_rps"]), 3),
        "cycles": c,
        "cycles_profiled": p,
        "ratio": ratio,
        "ratio_per_echo_request": per_request,
        "profiler_cost": cost,
        "goal": {"ratio": 0.3, "p99_ms": 10, "profiler_cost": 0.05},
        "meets_goal": ratio >= 0.3 and float(c["p99_ms"]) < 10,
        "cpu_us_per_cycle": per_cycle,
        "echo_cpu_us_per_cycle": echo_per_cycle,
        "recorded_echo_cpu_us_per_cycle": recorded_per_cycle,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def fold_only(tracked: int, changes: int = 3000) -> dict[str, object]:
    """Microseconds per change of the pure decision with ``tracked`` jobs running."""
    from schemas.budget import BudgetChange, BudgetLimits, BudgetState, Inputs, Perf
    from services.budget import fold

    ids, state = IdGenerator(), fold.BudgetFold()
    if not 0 <= tracked <= 250:
        raise SystemExit("--fold-only: 0 to 250 running jobs (max_running_jobs is at most 256)")
    limits = BudgetLimits(max_running_jobs=256, max_queue_depth=10000, max_vram_mb=4000000,
                          max_mem_mb=16000000, max_cpu_percent=100)  # fmt: skip
    perf = Perf(cpu_percent=0.05, ram_mb=10, vram_mb=10)

    def change(trigger: str, **request: object) -> None:
        inputs = request.pop("inputs", Inputs())
        data = BudgetChange(n=state.n + 1, inputs=inputs, **request)  # type: ignore[arg-type]
        stamp = BudgetState(trigger=trigger, payload=data, timestamp=time.time())  # type: ignore[arg-type]
        outcome = fold.decide(state, stamp)
        assert outcome is not None, trigger
        recorded = msgspec.structs.replace(stamp, payload=outcome.record(data, state))
        now = time.time()
        encode_event(make_event(recorded, id=ids.new(), key="bench", ts=now, source="budget"))

    change("limits.updated", inputs=Inputs(limits=limits, enforce=True))
    for i in range(tracked):
        change("job.registered", job_id=f"bg{i}", job_type="render", perf=perf)
        change("job.started", job_id=f"bg{i}")
    start = time.perf_counter()
    for i in range(changes // 3):
        change("job.registered", job_id=f"j{i}", job_type="render", perf=perf)
        change("job.started", job_id=f"j{i}")
        change("job.finished", job_id=f"j{i}", status="complete")
    took = time.perf_counter() - start
    return {"bench": "budget-fold", "tracked_jobs": tracked, "changes": changes // 3 * 3,
            "us_per_change": round(took / (changes // 3 * 3) * 1e6, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def build_only(n: int, tracked: int = 64) -> dict[str, object]:
    """CPU microseconds per change of the service's build path, no NATS."""
    from schemas.budget import JobFinish, JobRef, JobRegister, Perf
    from services.budget.service import BudgetService
    from services.runtime.bus import Bus
    from services.runtime.config import load_config

    with tempfile.TemporaryDirectory(prefix="gpuroute-build-") as tmp:
        config = load_config(data_dir=tmp, http__port=0)
        config.budget.limits = msgspec.convert(tomllib.loads(CONFIG)["budget"]["limits"],
                                               type(config.budget.limits))  # fmt: skip
        service = BudgetService(Bus(nats.NATS(), source="budget"), config)
        service.state.flags = {ENABLE_PERF_BUDGETS: True}
        service._limits(config.budget.limits, "config")
        register = msgspec.json.Decoder(JobRegister)
        ref, finish = msgspec.json.Decoder(JobRef), msgspec.json.Decoder(JobFinish)
        encoder = msgspec.json.Encoder()
        perf = Perf(cpu_percent=0.1, ram_mb=10, vram_mb=10)
        for i in range(tracked):
            service._register_build(JobRegister(job_id=f"bg{i}", perf=perf))()
            service._start_build(JobRef(job_id=f"bg{i}"))()

        def cycle(i: int) -> None:
            job = msgspec.json.encode({"job_id": f"j{i}"})
            body = msgspec.json.encode({"job_id": f"j{i}", "job_type": "render", "perf": perf})
            for build in (service._register_build(register.decode(body)),
                          service._start_build(ref.decode(job)),
                          service._finish_build(finish.decode(job))):  # fmt: skip
                events, answer = build()
                encoder.encode(answer)
                for event in events:
                    encode_event(event)

        start = time.process_time()
        for i in range(n):
            cycle(i)
        took = time.process_time() - start
    return {"bench": "budget-build", "tracked_jobs": tracked, "changes": 3 * n,
            "cpu_us_per_change": round(took / max(1, 3 * n) * 1e6, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="per measured round and target")
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--sync", default="always",
                   help="JetStream sync_interval: always (fsync before each ack, as up runs) "
                        "or a duration such as 2m")  # fmt: skip
    p.add_argument("--recording-echo", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument(
        "--fold-only",
        type=int,
        default=None,
        metavar="TRACKED",
        help="time the decision alone with TRACKED jobs running (no NATS)",
    )
    p.add_argument(
        "--build-only",
        type=int,
        default=None,
        metavar="CYCLES",
        help="time the service's build path alone for CYCLES cycles (no NATS)",
    )
    args = p.parse_args()
    if args.recording_echo:
        asyncio.run(recording_echo(args.recording_echo))
        return
    if args.build_only is not None:
        print(json.dumps(build_only(args.build_only)))
        return
    if args.fold_only is not None:
        print(json.dumps(fold_only(args.fold_only)))
        return
    print(json.dumps(asyncio.run(bench(args))))


if __name__ == "__main__":
    main()
