"""Realistic job lifecycle events for the benchmarks.

Each job produces five events in order: submitted, advised (``wait``: the
queue is full), advised again (where it runs), started, then succeeded (9 in
10) or failed. Payloads look like what the advisor and the
runners publish: a full job spec, a decision with the inputs it used, costs,
artifact paths. Deterministic for a given seed.
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import Iterable, Iterator

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.jobs import JobFailed, JobSpec, JobStarted, JobSubmitted, JobSucceeded
from services.runtime.clock import ManualClock
from services.runtime.ids import IdGenerator

EVENTS_PER_JOB = 5

_MODELS = ("sdxl-1.0", "flux-dev", "sd-1.5", "wan-2.1", "llama-3.1-8b", "whisper-large-v3")
_KINDS = ("image", "image", "image", "video", "llm", "speech")
_PROVIDERS = ("runpod", "hf", "replicate", "modal")
_ERRORS = (
    "CUDA out of memory: tried to allocate 2.00 GiB",
    "provider timeout after 300s",
    "model weights not found",
)


def job_events(
    n_jobs: int, *, seed: int = 7, start: float = 1_767_000_000.0, source: str = "bench"
) -> Iterator[Event]:
    """``n_jobs * 5`` events; jobs interleave a little, as on a live system."""
    from schemas import make_event

    rnd = random.Random(seed)
    clock = ManualClock(start)
    ids = IdGenerator(clock, randbytes=rnd.randbytes)
    window: list[tuple[str, int, str]] = []  # (job id, next step, correlation)

    def emit(data: object, key: str, corr: str | None, cause: str | None) -> Event:
        clock.advance(0.0004)
        eid = ids.new()
        return make_event(
            data,  # type: ignore[arg-type]
            id=eid,
            key=key,
            ts=clock.now(),
            source=source,
            correlation_id=corr or eid,
            causation_id=cause,
        )

    last_id: dict[str, str] = {}
    started = 0
    while started < n_jobs or window:
        if started < n_jobs and (len(window) < 8 or rnd.random() < 0.2):
            job_id = f"job-{started:08d}"
            i = rnd.randrange(len(_KINDS))
            kind = _KINDS[i]
            spec = JobSpec(
                kind=kind,  # type: ignore[arg-type]
                width=1024 if kind in ("image", "video") else None,
                height=1024 if kind in ("image", "video") else None,
                batch=rnd.choice((1, 1, 2, 4)),
                frames=81 if kind == "video" else 1,
                steps=rnd.choice((20, 28, 30, 50)) if kind in ("image", "video") else None,
                model=_MODELS[i],
                vram_gb=round(rnd.uniform(4, 40), 1),
                max_cost_usd=round(rnd.uniform(0.05, 2.0), 2),
            )
            ev = emit(JobSubmitted(spec=spec), job_id, None, None)
            last_id[job_id] = ev.id
            window.append((job_id, 1, ev.id))
            started += 1
            yield ev
            continue
        k = rnd.randrange(len(window))
        job_id, step, corr = window[k]
        cause = last_id[job_id]
        remote = rnd.random() < 0.4
        provider = rnd.choice(_PROVIDERS) if remote else None
        target = "remote" if remote else rnd.choice(("local", "local", "cpu"))
        if step == 1:
            data: object = JobAdvised(
                target="wait",
                rule="queue-full",
                reason="local queue depth 12 >= 12",
                inputs={"queue_depth": 12, "free_vram_gb": round(rnd.uniform(0, 24), 2)},
            )
        elif step == 2:
            data = JobAdvised(
                target=target,
                rule="remote-cheapest" if remote else "local-fits-vram",
                reason="local VRAM 24.0 GB < 38.5 GB needed" if remote else "fits in free VRAM",
                provider=provider,
                estimate_usd=round(rnd.uniform(0.01, 1.5), 4) if remote else 0.0,
                inputs={
                    "free_vram_gb": round(rnd.uniform(0, 24), 2),
                    "queue_depth": rnd.randrange(0, 12),
                    "cpu_percent": round(rnd.uniform(0, 100), 1),
                    "price_per_hour_usd": 0.69,
                    "flags": {"features.prefer_local": True},
                },
            )
        elif step == 3:
            data = JobStarted(target=target, provider=provider)
        elif rnd.random() < 0.9:
            data = JobSucceeded(
                artifacts=[f"s3://gpuroute-artifacts/{job_id}/out-{j}.png" for j in range(2)],
                cost_usd=round(rnd.uniform(0, 1.2), 4),
            )
        else:
            data = JobFailed(error=rnd.choice(_ERRORS))
        ev = emit(data, job_id, corr, cause)
        last_id[job_id] = ev.id
        if step == EVENTS_PER_JOB - 1:
            window.pop(k)
            del last_id[job_id]
        else:
            window[k] = (job_id, step + 1, corr)
        yield ev


def events(n: int, *, seed: int = 7, start: float = 1_767_000_000.0) -> Iterator[Event]:
    """Exactly ``n`` events (jobs cut off at the end may be incomplete)."""
    for i, ev in enumerate(job_events(-(-n // EVENTS_PER_JOB), seed=seed, start=start)):
        if i >= n:
            return
        yield ev


def stop_all(procs: Iterable[subprocess.Popen[bytes]], wait_s: float = 20.0) -> None:
    """SIGTERM every benchmark process at once, then wait for each; one that
    outlives ``wait_s`` is killed (a bench never leaves a process behind)."""
    procs = list(procs)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(wait_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
