"""The ``synthetic`` executor: a job that only waits, for demos and benchmarks.

Payload (JSON object; every field optional)::

    {"duration_s": 0.5, "outcome": "success" | "failure" | "flaky",
     "failure_rate": 0.5, "steps": 10}

It reports ``steps`` progress steps spread over ``duration_s`` and ends as
``outcome`` says; ``flaky`` fails with probability ``failure_rate``, drawn from a
generator seeded by the run's seed and attempt, so a replay of the same job
fails on the same attempts. ``failure`` is not retryable, a ``flaky`` failure is.
Every outcome says ``dry_run: true`` and ``details.synthetic: true``: nothing ran.
A zero duration yields once and reports one step (the benchmark's job).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import msgspec

from schemas.scheduler_settings import SyntheticSettings

from .base import Executor, Outcome, Progress, Run
from .payloads import BadPayload, convert

Sleep = Callable[[float], Awaitable[None]]


class SyntheticPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    duration_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    outcome: Literal["success", "failure", "flaky"] = "success"
    failure_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    steps: Annotated[int, msgspec.Meta(ge=1)] = 10


class SyntheticExecutor(Executor):
    name = "synthetic"
    uses_workdir = False

    def __init__(self, settings: SyntheticSettings, *, sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self._sleep = sleep

    def parse(self, payload: object) -> SyntheticPayload:
        job = convert(payload, SyntheticPayload, "synthetic")
        if job.duration_s > self.settings.max_duration_s:
            raise BadPayload(
                f"synthetic payload: duration_s {job.duration_s:g} is over the limit of "
                f"{self.settings.max_duration_s:g} ([scheduler.synthetic] max_duration_s)"
            )
        if job.steps > self.settings.max_steps:
            raise BadPayload(
                f"synthetic payload: steps {job.steps} is over the limit of "
                f"{self.settings.max_steps} ([scheduler.synthetic] max_steps)"
            )
        return job

    async def run(self, run: Run, progress: Progress) -> Outcome:
        try:
            job = self.parse(run.payload)
        except BadPayload as e:
            return Outcome("failed", str(e), dry_run=True, details={"synthetic": True})
        steps = job.steps if job.duration_s > 0 else 1
        for step in range(1, steps + 1):
            await self._sleep(job.duration_s / steps)
            await progress.step(step, steps)
        details: dict[str, object] = {"synthetic": True, "outcome": job.outcome}
        if job.outcome == "failure":
            return Outcome("failed", "synthetic failure (outcome: failure)", dry_run=True,
                           details=details)  # fmt: skip
        if job.outcome == "flaky":
            draw = random.Random(f"{run.seed}:{run.attempt}").random()
            details["draw"] = round(draw, 6)
            if draw < job.failure_rate:
                return Outcome(
                    "failed",
                    f"synthetic flaky failure (draw {draw:.3f} < failure_rate "
                    f"{job.failure_rate:g}, attempt {run.attempt})",
                    retryable=True, dry_run=True, details=details,
                )  # fmt: skip
        return Outcome("succeeded", dry_run=True, details=details)
