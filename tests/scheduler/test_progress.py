"""EventProgress: a completed step is sent only when something follows it."""

from __future__ import annotations

from pathlib import Path

import msgspec

from schemas.jobs import JobSpec
from schemas.scheduler import JobProgress
from services.scheduler.attempts import EventProgress, run_attempt
from services.scheduler.executors.base import Executor, Outcome, Progress, Run


class Steps(Executor):
    """Reports 0/2, 2/2 (complete), then ends as ``outcome`` says, after a line if ``line``."""

    name = "synthetic"

    def __init__(self, outcome: Outcome, line: bool = False) -> None:
        self.outcome, self.line = outcome, line

    async def run(self, run: Run, progress: Progress) -> Outcome:
        await progress.step(0, 2)
        await progress.step(2, 2)
        if self.line:
            await progress.log("done")
        return self.outcome


async def sent(executor: Executor, tmp_path: Path) -> list[JobProgress]:
    events: list[JobProgress] = []

    async def emit(data: msgspec.Struct) -> None:
        assert isinstance(data, JobProgress)
        events.append(data)

    run = Run(job_id="j", attempt=1, spec=JobSpec(), payload=None, timeout_s=5,
              workdir=tmp_path, seed=1)  # fmt: skip
    await run_attempt(executor, run, EventProgress(1, emit))
    return events


async def test_a_success_right_after_the_last_step_sends_no_step_of_100(tmp_path: Path) -> None:
    events = await sent(Steps(Outcome("succeeded")), tmp_path)
    assert [(e.value, e.maximum) for e in events] == [(0, 2)]


async def test_a_failure_or_a_report_after_it_sends_the_completed_step(tmp_path: Path) -> None:
    events = await sent(Steps(Outcome("failed", "no")), tmp_path)
    assert [(e.value, e.maximum) for e in events] == [(0, 2), (2, 2)]
    events = await sent(Steps(Outcome("succeeded"), line=True), tmp_path)
    assert [(e.value, e.line) for e in events] == [(0, None), (2, None), (None, "done")]
