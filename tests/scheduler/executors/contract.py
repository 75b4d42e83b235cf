"""The one contract every executor keeps, as an abstract test suite
(eventsourcing's ``tests/persistence.py`` style): :class:`ExecutorContract` holds
the tests, each executor's subclass (``test_contract.py``) provides a
:class:`Harness` fixture that knows its executor's payloads and far side.

Cases: submit and succeed with progress; fail with a reason; a payload the
executor cannot read; a timeout (``asyncio.timeout`` around ``run``, as the
scheduler does); cancel while queued; cancel while running. After a timeout or
cancel, ``CancelledError``/``TimeoutError`` propagates and the harness checks
that the far side was undone (process group gone, prompt deleted or
interrupted, remote job cancelled). An executor without a queue of its own
(command, synthetic) is "queued" before its work starts: cancelled at once.
"""

from __future__ import annotations

import abc
import asyncio
from pathlib import Path
from typing import Any, Literal

import pytest

from schemas.jobs import JobSpec
from services.scheduler.executors.base import Executor, Progress, Run

Case = Literal["success", "failure", "slow", "queued"]


class Recorder(Progress):
    """Keeps every report; :meth:`wait` waits for one that satisfies a test."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float, str | None]] = []
        self.lines: list[tuple[str, str]] = []
        self.remote_ids: list[str] = []
        self._changed = asyncio.Event()

    async def step(self, value: float, maximum: float, node: str | None = None) -> None:
        self.steps.append((value, maximum, node))
        self._changed.set()

    async def log(self, line: str, stream: Literal["stdout", "stderr", "info"] = "info") -> None:
        self.lines.append((stream, line))
        self._changed.set()

    async def remote(self, remote_id: str) -> None:
        self.remote_ids.append(remote_id)
        self._changed.set()

    @property
    def count(self) -> int:
        return len(self.steps) + len(self.lines)

    async def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


class Harness(abc.ABC):
    executor: Executor
    failure_text: str
    """A piece of the failure reason the ``failure`` payload must give."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.attempts = 0

    def run(self, case: Case | Any, *, payload: Any = None, provider: str | None = None) -> Run:
        self.attempts += 1
        return Run(
            job_id=f"job-{self.attempts}",
            attempt=1,
            spec=JobSpec(width=64, height=64),
            payload=self.payload(case) if payload is None else payload,
            timeout_s=None,
            workdir=self.workdir / f"job-{self.attempts}" / "1",
            seed=42,
            provider=provider,
        )

    @abc.abstractmethod
    def payload(self, case: Case) -> Any: ...

    def bad_payload(self) -> Any:
        return {"surely_not_a_field": True}

    async def started(self, run: Run, progress: Recorder) -> None:
        """Returns once ``run`` is running (its work has reported something)."""
        await progress.wait(lambda: progress.count > 0)

    async def queued(self, run: Run, progress: Recorder) -> None:  # noqa: B027
        """Returns once ``run`` waits in the far side's queue (nothing to wait for
        where there is no queue: cancelled before the work starts)."""

    @abc.abstractmethod
    async def undone(self, run: Run, progress: Recorder, was: Literal["queued", "running"]) -> None:
        """Asserts the far side holds nothing of ``run`` any more."""


class ExecutorContract:
    """Subclasses provide a ``harness`` fixture."""

    async def test_success_with_progress(self, harness: Harness) -> None:
        progress = Recorder()
        outcome = await harness.executor.run(harness.run("success"), progress)
        assert outcome.status == "succeeded", outcome.reason
        assert progress.count > 0
        assert all(0 <= v <= m for v, m, _ in progress.steps)

    async def test_failure_names_what_failed(self, harness: Harness) -> None:
        outcome = await harness.executor.run(harness.run("failure"), Recorder())
        assert outcome.status == "failed"
        assert harness.failure_text in outcome.reason

    async def test_bad_payload_fails_not_retryable(self, harness: Harness) -> None:
        run = harness.run("success", payload=harness.bad_payload())
        outcome = await harness.executor.run(run, Recorder())
        assert (outcome.status, outcome.retryable) == ("failed", False)
        assert harness.executor.name in outcome.reason

    async def test_timeout_undoes_the_work(self, harness: Harness) -> None:
        run, progress = harness.run("slow"), Recorder()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                task = asyncio.create_task(harness.executor.run(run, progress))
                await harness.started(run, progress)
                await task
        await harness.undone(run, progress, "running")

    async def test_cancel_while_queued(self, harness: Harness) -> None:
        run, progress = harness.run("queued"), Recorder()
        task = asyncio.create_task(harness.executor.run(run, progress))
        await harness.queued(run, progress)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await harness.undone(run, progress, "queued")

    async def test_cancel_while_running(self, harness: Harness) -> None:
        run, progress = harness.run("slow"), Recorder()
        task = asyncio.create_task(harness.executor.run(run, progress))
        await harness.started(run, progress)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await harness.undone(run, progress, "running")

    async def test_health_answers(self, harness: Harness) -> None:
        health = await harness.executor.health()
        assert isinstance(health.get("ok"), bool)
