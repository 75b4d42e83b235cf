"""What timing the hot paths costs: each path with the profiler's span on and off.

    python bench/hot_paths.py [--rounds 200] [--advise 200] [--batches 200] [--batch 1000]

In-process, on the real code: the advisor's decision and its encoding
(what an advise request does inside its span on a cache miss) and the store's batch write
(``EventLog.append`` of ``--batch`` events into a fresh SQLite file), with
``HotPaths.span`` on and off in turn, chunk by chunk, so that both see the
same load from whatever else runs on the machine. Prints ONE JSON
object with ops/s each way and ``cost`` = 1 - on/off (goal < 0.05). The
follower's rebuild is one ``HotPaths.record`` per rebuild: nothing to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import encode_event, make_event  # noqa: E402
from schemas.jobs import JobSpec, JobSubmitted  # noqa: E402
from services.advisor.config import DEFAULT_CONFIG  # noqa: E402
from services.advisor.rules import Decider  # noqa: E402
from services.advisor.state import AdvisorState, context  # noqa: E402
from services.runtime.ids import IdGenerator  # noqa: E402
from services.runtime.profiling import HotPaths  # noqa: E402
from services.store.eventlog import EventLog  # noqa: E402
from services.store.ingest import classify  # noqa: E402


async def compare(
    rounds: int, run: Callable[[HotPaths], Awaitable[tuple[int, float]]]
) -> dict[str, float]:
    """ops/s of ``run`` with the span off and on, alternating in short chunks
    so that both see the same load on a shared machine, and the cost."""
    hot = HotPaths("bench")
    ops = {False: 0, True: 0}
    seconds = {False: 0.0, True: 0.0}
    for r in range(rounds):
        for on in (False, True) if r % 2 == 0 else (True, False):
            hot.on = on
            n, elapsed = await run(hot)
            ops[on] += n
            seconds[on] += elapsed
    off, on_ = ops[False] / seconds[False], ops[True] / seconds[True]
    return {"off_ops_s": round(off, 1), "on_ops_s": round(on_, 1), "cost": round(1 - on_ / off, 4)}


def advise(n: int) -> Callable[[HotPaths], Awaitable[tuple[int, float]]]:
    decider = Decider(context(AdvisorState()), DEFAULT_CONFIG)
    encode = msgspec.json.Encoder().encode
    specs = [JobSpec(width=256 + 64 * (i % 16), height=256 + 64 * (i % 9)) for i in range(n)]

    async def run(hot: HotPaths) -> tuple[int, float]:
        t0 = time.perf_counter()
        for spec in specs:
            with hot.span("advise"):
                encode(decider.decide(spec))
        return n, time.perf_counter() - t0

    return run


async def batch_write(
    folder: Path, size: int
) -> tuple[Callable[[HotPaths], Awaitable[tuple[int, float]]], EventLog]:
    ids = IdGenerator()
    log = await EventLog.open(folder / "events.db")
    position = 0

    async def run(hot: HotPaths) -> tuple[int, float]:
        nonlocal position
        rows = []
        for _ in range(size):
            data = JobSubmitted(spec=JobSpec(width=512, height=512))
            event = make_event(data, id=ids.new(), key="j", ts=time.time(), source="b")
            row = classify(event.type, encode_event(event))
            assert not isinstance(row, str), row
            rows.append(row)
        position += size
        t0 = time.perf_counter()
        with hot.span("store.batch_write"):
            await log.append(rows, position)
        return 1, time.perf_counter() - t0

    return run, log


def span_cost_us(n: int = 1_000_000) -> dict[str, float]:
    """The span's own cost per call, off and on (a tight loop: the stable figure
    on a loaded machine, where throughput differences of a few % are noise)."""
    hot = HotPaths("bench")
    out = {}
    for on in (False, True):
        hot.on = on
        t0 = time.perf_counter()
        for _ in range(n):
            with hot.span("x"):
                pass
        out["on" if on else "off"] = round((time.perf_counter() - t0) / n * 1e6, 3)
    return out


async def bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gpuroute-hot-") as tmp:
        write, log = await batch_write(Path(tmp), args.batch)
        try:
            store = await compare(args.batches, write)
        finally:
            await log.close()
        return {
            "bench": "hot_paths",
            "advise": {"chunks": args.rounds, "decisions_per_chunk": args.advise,
                       **await compare(args.rounds, advise(args.advise))},
            "store_batch_write": {"batches": args.batches, "batch": args.batch, **store},
            "span_us": span_cost_us(),
            "goal": {"cost": 0.05},
        }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=200, help="advise chunks, on and off in turn")
    p.add_argument("--advise", type=int, default=200, help="decisions per chunk")
    p.add_argument("--batches", type=int, default=200, help="batch writes, on and off in turn")
    p.add_argument("--batch", type=int, default=1000, help="events per batch")
    print(json.dumps(asyncio.run(bench(p.parse_args()))))


if __name__ == "__main__":
    main()
