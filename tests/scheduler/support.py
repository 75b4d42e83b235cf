"""Helpers of the scheduler tests: the service in-process beside the store and
the advisor, trivial executors implementing ``executors/base.py``, a client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg

from schemas import decode_event
from schemas import scheduler as s
from schemas.subjects import STORED_PREFIX
from schemas.system import decode_stored
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.executors.base import Artifact, Executor, Outcome, Progress, Run
from services.scheduler.service import SchedulerService
from tests.support import Folds, poll


class Quick(Executor):
    """Succeeds at once with one artifact (``out.txt``: the payload's text), or
    fails as the payload says: ``{"fail": "why", "retryable": true, "times": n}``
    fails the first n attempts. ``{"hold": true}`` waits until cancelled."""

    name = "synthetic"

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.cancelled: list[str] = []

    async def run(self, run: Run, progress: Progress) -> Outcome:
        self.runs.append(run)
        payload: dict[str, Any] = run.payload if isinstance(run.payload, dict) else {}
        await progress.step(1, 2)
        if payload.get("hold"):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(run.job_id)
                raise
        if "fail" in payload and run.attempt <= int(payload.get("times", 99)):
            return Outcome(status="failed", reason=str(payload["fail"]),
                           retryable=bool(payload.get("retryable")))  # fmt: skip
        await progress.step(2, 2)
        folder = run.workdir / "artifacts"
        folder.mkdir(exist_ok=True)
        data = str(payload.get("text", "hi")).encode()
        path = folder / "out.txt"
        path.write_bytes(data)
        art = Artifact(name="out.txt", path=path, size=len(data), content_type="text/plain",
                       sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
        return Outcome(status="succeeded", artifacts=(art,), dry_run=True)


@contextlib.asynccontextmanager
async def running_scheduler(
    config: Config,
    executor: Executor | None = None,
    *,
    every_executor: bool = False,
    executors: dict[str, Executor] | None = None,
    **settings: Any,
) -> AsyncIterator[SchedulerService]:
    """The service on a bus of its own; ``every_executor``: the four real ones
    (build_executors), else ``executors``, else ``executor`` (default
    :class:`Quick`) as ``synthetic``."""
    import msgspec

    config.scheduler = msgspec.structs.replace(
        config.scheduler, **{"retry_base_s": 0.01, **settings}
    )
    bus = await Bus.connect(config.nats.url or "", source="scheduler")
    if not every_executor and executors is None:
        executors = {"synthetic": executor or Quick()}
    service = SchedulerService(bus, config, executors)
    try:
        await service.start()
        assert await service.follower.wait_ready(15), "the scheduler did not get ready"
        yield service
    finally:
        await service.stop()
        await bus.close()


ENDED = frozenset({"job.succeeded", "job.failed", "job.cancelled"})
"""The events that end a job (an infeasible one ends with job.failed)."""


class Client:
    """The scheduler's request/reply API on ``bus``. ``folds`` are the
    followers of the schedulers whose views are read (``sched.follower``):
    :meth:`ended` reads a view once they folded the job's end; without them it
    re-reads the view until the answering instance has folded it."""

    def __init__(self, bus: Bus, *folds: Folds) -> None:
        self.bus = bus
        self.folds = folds
        self._ends: dict[str, tuple[int, str]] | None = None
        """job id -> (store position, type) of its end event, stored since the
        first submit (or wait): a dict, so 200 waiters cost no scan each."""
        self._ended = asyncio.Condition()

    async def _watch(self) -> dict[str, tuple[int, str]]:
        if self._ends is None:
            self._ends = {}
            for subject in ENDED:
                await self.bus.nc.subscribe(STORED_PREFIX + subject, cb=self._on_end)
            await self.bus.nc.flush()
        return self._ends

    async def _on_end(self, msg: Msg) -> None:
        item = decode_stored(msg.data)
        event = decode_event(bytes(item.event))
        assert self._ends is not None
        self._ends.setdefault(event.key, (item.seq, event.type))
        async with self._ended:
            self._ended.notify_all()

    async def submit(self, **body: Any) -> s.JobAccepted:
        await self._watch()  # before the job can end
        body.setdefault("executor", "synthetic")
        body.setdefault("kind", "other")  # an image of the default size waits for a GPU
        answer: s.JobAccepted = await self.bus.call(s.SUBMIT, body, s.JobAccepted, timeout=15)
        return answer

    async def get(self, job_id: str) -> s.JobView:
        view: s.JobView = await self.bus.call(s.GET, {"id": job_id}, s.JobView, timeout=10)
        return view

    async def cancel(self, job_id: str) -> s.JobView:
        view: s.JobView = await self.bus.call(s.CANCEL, {"id": job_id}, s.JobView, timeout=10)
        return view

    async def ended(self, job_id: str, timeout: float = 15) -> s.JobView:
        """The view of ``job_id`` once its end event (job.succeeded, failed,
        cancelled) is stored and folded."""
        ends = await self._watch()
        view = await self.get(job_id)
        if ENDED.intersection(view.history):  # "infeasible" is terminal before job.failed
            return view
        try:
            async with self._ended:
                await asyncio.wait_for(self._ended.wait_for(lambda: job_id in ends), timeout)
        except TimeoutError:
            raise AssertionError(f"no end of {job_id} within {timeout}s: {view}") from None
        seq, end = ends[job_id]
        for follower in self.folds:
            assert await follower.wait_position(seq, timeout), f"{end} of {job_id} not folded"
        if self.folds:
            return await self.get(job_id)

        async def folded() -> s.JobView | None:
            view = await self.get(job_id)
            return view if ENDED.intersection(view.history) else None

        # without the followers, the answering scheduler's fold announces nothing here
        result: s.JobView = await poll(folded, timeout=timeout, interval=0.02)
        return result
