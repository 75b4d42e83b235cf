"""Driving one owned job from its advice to its end (the scheduler's writer side).

:meth:`Driver.drive` is the whole life of a job this instance owns::

    advice -> budget register -> job.queued | job.delayed (-> wait for admission)
      -> for each attempt: slot (budget start, or a local slot) -> job.started
         -> executor (job.progress ...) -> job.succeeded
                                         | job.retried (backoff) -> next attempt
                                         | job.failed
    cancelled at any point -> job.cancelled (unless the cancel endpoint wrote it)

The budget is told how the job ended however it ends (``finally``). A budget
service that does not answer, or budgets off, is ``job.queued`` with the code
``no_budget`` / ``budgets_off``, and local slots (``[scheduler] max_running``)
bound what runs at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

import msgspec

from schemas import budget as b
from schemas.advisor import JobAdvised, QueueDepthChanged
from schemas.jobs import JobFailed, JobStarted, JobSubmitted, JobSucceeded
from schemas.scheduler import (
    BudgetView,
    DecisionView,
    JobDelayed,
    JobQueued,
    JobRerouted,
    JobRetried,
)
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.errors import BusError, ServiceCallError
from services.runtime.service import Service
from services.scheduler.attempts import (
    EventProgress,
    run_attempt,
    seed_of,
    workdir_of,
    write_sidecars,
)
from services.scheduler.cloud import PodTargets
from services.scheduler.executors.base import Executor, Run
from services.scheduler.placement import Placement, Waiting, advice_of
from services.scheduler.presence import Presence
from services.scheduler.table import JobRow
from services.scheduler.writer import Writer

BUDGET_TIMEOUT_S = 5.0
NO_BUDGET_RECHECK_S = 1.0
"""How long "no budget service answers" is believed without asking (presence.py)."""
ADMIT_POLL_S = (0.05, 1.0)
"""First and longest wait between start requests of a delayed job."""


class Job:
    """A job this instance owns (in memory; the table holds what the log says)."""

    def __init__(self, job_id: str, request: JobSubmitted, loop: asyncio.AbstractEventLoop):
        self.job_id = job_id
        self.request = request
        self.advised: asyncio.Future[JobAdvised] = loop.create_future()
        self.answered: asyncio.Future[None] = loop.create_future()
        self.task: asyncio.Task[None] | None = None
        self.pod: str | None = None
        """The cloud pod running the attempt (None: a local slot)."""
        self.cancel_reason: str | None = None
        self.state = "submitted"
        self.decision: DecisionView | None = None
        self.budget: BudgetView | None = None
        self.done = False

    def answer(self, state: str) -> None:
        self.state = state
        if not self.answered.done():
            self.answered.set_result(None)


class Slots:
    """At most ``n`` holders; waiters served by priority (higher first), then order."""

    def __init__(self, n: int) -> None:
        self.free = n
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


class Driver(Service):
    """The part of the scheduler service that runs owned jobs."""

    executors: dict[str, Executor]
    cloud: PodTargets

    def __init__(self, bus: Bus, config: Config) -> None:
        super().__init__(bus, config)
        self.settings = config.scheduler
        self.jobs: dict[str, Job] = {}
        self.slots = Slots(self.settings.max_running)
        self.running = 0
        self.placement = Placement(bus)
        self.writer = Writer(bus)
        self.waiting = Waiting(self.placement, self.spawn, self.log)
        self._remote_owned = 0
        self.budget = Presence(NO_BUDGET_RECHECK_S, self.clock)
        self._remote_depth = -1

    def own(self, job: Job) -> None:
        """This instance drives ``job`` from now on."""
        self.jobs[job.job_id] = job
        if job.request.executor == "remote":
            self._remote_owned += 1
            self._depth_changed()

    def disown(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None and job.request.executor == "remote":
            self._remote_owned -= 1
            self._depth_changed()

    def _depth_changed(self) -> None:
        """``queue.depth.changed`` (key ``remote``): this instance's live remote jobs,
        sent through the writer so that successive depths land in order."""
        depth = self._remote_owned
        if depth != self._remote_depth:
            self._remote_depth = depth
            event = self.bus.event(QueueDepthChanged(depth=min(depth, 10_000)), key="remote")
            self.writer.send(event).add_done_callback(self._depth_sent)

    def _depth_sent(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.log.warning("queue depth not published",
                             extra={"fields": {"error": str(future.exception())}})  # fmt: skip

    def wake_waiting(self) -> None:
        """A job ended somewhere: every job waiting for a target asks the advisor again."""
        self.waiting.wake()

    async def emit_for(self, job: Job, data: msgspec.Struct) -> None:
        """Publish one event of ``job`` and wait for its ack (through the writer)."""
        await self.writer.publish(self.bus.event(data, key=job.job_id))

    async def drive(self, job: Job, *, first_attempt: int, row: JobRow | None = None) -> None:
        on_budget = False
        ending = "error"
        try:
            if row is None or row.rule is None:
                advice = await job.advised
            else:
                advice = JobAdvised(target=row.target or "local", rule=row.rule,
                                    reason=row.reason or "", provider=row.provider)  # fmt: skip
            _decided(job, advice)
            if advice.target == "wait":
                advice = await self._wait_for_target(job, advice)
            if advice.target in ("infeasible", "rejected"):
                job.answer(advice.target)
                await self._fail(job, f"{advice.target}: {advice.reason}", "infeasible", 0)
                return
            on_budget = await self._admit(job)
            if job.state == "failed":
                return
            rerouted = row.rerouted_attempts if row is not None else 0
            ending = await self._attempts(job, advice, first_attempt, on_budget, rerouted)
        except asyncio.CancelledError:
            ending = "cancelled"
            if job.cancel_reason is None:  # not the cancel endpoint: the service is stopping
                raise
            job.answer("cancelled")
        except Exception as e:  # a bug here must end the job, not leave it running
            if self.stopping and isinstance(e, BusError):
                # the writer stopped with the service: the job's lease expires and
                # another instance (or this one restarted) takes it over
                self.log.info("job left to its lease: the service is stopping",
                              extra={"fields": {"job": job.job_id, "error": str(e)}})  # fmt: skip
            else:
                self.log.exception("job driver failed", extra={"fields": {"job": job.job_id}})
                await self._fail(job, f"scheduler error: {type(e).__name__}: {e}", "scheduler", 0)
        finally:
            job.done = True
            self.disown(job.job_id)
            if on_budget:
                await self._budget_finish(job, ending)

    async def _wait_for_target(self, job: Job, advice: JobAdvised) -> JobAdvised:
        """``job.delayed`` (code ``wait``) until the advisor places the job; that
        decision is recorded as ``job.rerouted`` from ``wait`` and returned
        (``infeasible`` too: the caller fails it). See placement.py for when."""
        job.budget = BudgetView(state="delayed", code="wait", reason=advice.reason)
        await self.emit_for(job, JobDelayed(code="wait", reason=advice.reason))
        job.answer("delayed")
        new = advice_of(await self.waiting.placed(job.request.spec))
        await self.emit_for(job, JobRerouted(
            from_target="wait", to_target=new.target, to_provider=new.provider,
            reason=new.reason, rule=new.rule))  # fmt: skip
        _decided(job, new)
        return new

    async def _reroute(self, job: Job, advice: JobAdvised, why: str,
                       tried: set[str]) -> JobAdvised:  # fmt: skip
        """After a retryable failure of a remote attempt at ``advice.provider``: the
        cheapest other provider the advisor honours (``job.rerouted``), else ``advice``."""
        if advice.target != "remote" or advice.provider is None:
            return advice
        tried.add(advice.provider)
        try:
            decision = await self.placement.next_provider(job.request.spec, tried)
        except ServiceCallError as e:
            self.log.warning("no reroute: the advisor did not answer", extra={"fields": {
                "job": job.job_id, "error": str(e)}})  # fmt: skip
            return advice
        if decision is None:
            return advice
        new = advice_of(decision)
        await self.emit_for(job, JobRerouted(
            from_target=advice.target, from_provider=advice.provider, to_target=new.target,
            to_provider=new.provider, reason=f"{why}; {new.reason}", rule=new.rule))  # fmt: skip
        _decided(job, new)
        return new

    async def _admit(self, job: Job) -> bool:
        """Register with the budget; True when the budget tracks the job."""
        spec = job.request.spec
        vram_mb = int(spec.vram_gb * 1e9 / 2**20) if spec.vram_gb else 0
        register = b.JobRegister(job_id=job.job_id, job_type=job.request.executor or "job",
                                 perf=b.Perf(vram_mb=min(vram_mb, 1 << 22)))  # fmt: skip
        try:
            answer = await self.budget.call(
                lambda: self.bus.call(b.REGISTER, register, b.JobAnswer, BUDGET_TIMEOUT_S)
            )
        except ServiceCallError as e:
            if e.code == 409:  # registered before (a job taken over): it is the budget's
                answer = b.JobAnswer(job_id=job.job_id, queue_state="queued", code="fits",
                                     reason="registered before")  # fmt: skip
            else:
                job.budget = BudgetView(state="off", code="no_budget", reason=e.description)
                await self.emit_for(job, JobQueued(code="no_budget", reason=e.description))
                job.answer("queued")
                return False
        if answer.code == "budgets_off":
            job.budget = BudgetView(state="off", code=answer.code, reason=answer.reason)
            await self.emit_for(job, JobQueued(code=answer.code, reason=answer.reason))
            job.answer("queued")
            return True
        job.budget = BudgetView(state=answer.queue_state, code=answer.code, reason=answer.reason)
        if answer.queue_state == "rejected":
            job.answer("failed")
            await self._fail(job, f"budget: {answer.reason}", "budget", 0)
            return True
        if answer.queue_state == "delayed":
            await self.emit_for(job, JobDelayed(code=answer.code, reason=answer.reason))
        else:
            await self.emit_for(job, JobQueued(code=answer.code, reason=answer.reason))
        job.answer(answer.queue_state)
        return True

    async def _start_slot(self, job: Job, budgeted: bool) -> None:
        """Wait for the budget to start the job (or for a local slot)."""
        if not budgeted or (job.budget is not None and job.budget.state == "off"):
            job.pod = await self.cloud.acquire(self.slots, job, self.executors)
            return
        delay = ADMIT_POLL_S[0]
        was_delayed = job.budget is not None and job.budget.state == "delayed"
        while True:
            try:
                await self.bus.call(b.START, b.JobRef(job_id=job.job_id), b.JobAnswer,
                                    BUDGET_TIMEOUT_S)  # fmt: skip
                break
            except ServiceCallError as e:
                if e.code not in (409, 503, 504):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, ADMIT_POLL_S[1])
        if was_delayed:
            await self.emit_for(job, JobQueued(code="fits", reason="admitted after a delay"))
        job.pod = await self.cloud.acquire(self.slots, job, self.executors)

    async def _attempts(self, job: Job, advice: JobAdvised, first: int, budgeted: bool,
                        rerouted: int = 0) -> str:  # fmt: skip
        """Run attempts until one succeeds or none may follow. A retryable failure
        of a ``remote`` attempt that is rerouted to another provider does not
        count against ``max_attempts`` (``rerouted`` of them so far): the
        attempts are kept for failures no other provider can help with."""
        request = job.request
        executor = self.executors[request.executor or "synthetic"]
        attempt = first
        tried: set[str] = set()
        while True:
            await self._start_slot(job, budgeted and attempt == first)
            self.running += 1
            try:
                outcome = await self._one(job, *self.cloud.placed(job, executor, advice),
                                          attempt)  # fmt: skip
            finally:
                self.running -= 1
                self.cloud.release(job.pod, self.slots, job.job_id)
            if outcome.status == "succeeded":
                return "complete"
            fallback = self.cloud.fallback(job, outcome)
            if fallback is not None:  # serverless failed: a pod next, no attempt spent
                await self.emit_for(job, fallback)
                rerouted, attempt = rerouted + 1, attempt + 1
                await self._retry(job, attempt, 0.0, outcome.reason)
                continue
            if outcome.retryable and request.executor == "remote":
                moved = await self._reroute(job, advice, outcome.reason, tried)
                if moved is not advice:  # another provider, at once: no attempt spent
                    advice, rerouted, attempt = moved, rerouted + 1, attempt + 1
                    await self._retry(job, attempt, 0.0, outcome.reason)
                    continue
            spent = attempt - rerouted
            if outcome.retryable and spent < request.max_attempts:
                delay = min(self.settings.retry_base_s * 2 ** (spent - 1),
                            self.settings.retry_max_s)  # fmt: skip
                attempt += 1
                await self._retry(job, attempt, delay, outcome.reason)
                continue
            note = ""
            if outcome.retryable and rerouted:
                note = (f" ({spent} of {request.max_attempts} attempts spent, {rerouted} "
                        "rerouted to another provider)")  # fmt: skip
            elif outcome.retryable:
                note = f" (attempt {attempt} of {request.max_attempts})"
            code = str(outcome.details.get("code", "executor"))
            await self._fail(job, outcome.reason + note, code, attempt)
            return "error"

    async def _retry(self, job: Job, attempt: int, delay: float, reason: str) -> None:
        """``job.retried``: attempt ``attempt`` runs here after ``delay`` seconds."""
        await self.emit_for(job, JobRetried(attempt=attempt, delay_s=delay, reason=reason,
                                            owner=self.instance))  # fmt: skip
        await asyncio.sleep(delay)

    async def _one(self, job: Job, executor: Executor, advice: JobAdvised, attempt: int) -> Any:
        request = job.request
        times = {"started": self.clock.now()}
        provider = await self._adapter(request, advice)
        await self.emit_for(job, JobStarted(target=advice.target, provider=advice.provider,
                                            attempt=attempt, executor=executor.name,
                                            owner=self.instance,
                                            reason=advice.reason if job.pod else None))  # fmt: skip
        job.state = "running"
        run = Run(job_id=job.job_id, attempt=attempt, spec=request.spec, payload=request.payload,
                  timeout_s=request.timeout_s,
                  workdir=workdir_of(self.config.data_path, job.job_id, attempt,
                                     create=executor.uses_workdir),
                  seed=seed_of(job.job_id), provider=provider)  # fmt: skip

        async def emit(data: msgspec.Struct) -> None:
            await self.emit_for(job, data)

        outcome = await run_attempt(executor, run, EventProgress(attempt, emit))
        times["finished"] = self.clock.now()
        if outcome.status == "succeeded":
            if outcome.artifacts:
                await asyncio.to_thread(
                    write_sidecars,
                    outcome,
                    run,
                    request,
                    executor=executor.name,
                    rule=advice.rule,
                    times=times,
                )
            await self.emit_for(job, JobSucceeded(
                artifacts=[a.name for a in outcome.artifacts], cost_usd=outcome.cost_usd,
                attempt=attempt, dry_run=outcome.dry_run, remote_id=outcome.remote_id,
                provider=outcome.provider))  # fmt: skip
            job.state = "succeeded"
        return outcome

    async def _adapter(self, request: JobSubmitted, advice: JobAdvised) -> str | None:
        """The adapters' provider name of a remote decision (None: the payload's)."""
        if request.executor != "remote" or advice.target != "remote":
            return None
        try:
            return await self.placement.adapter_of(advice.provider)
        except ServiceCallError as e:
            self.log.warning(
                "provider kind unknown: the payload's provider runs the job",
                extra={"fields": {"provider": advice.provider, "error": str(e)}},
            )
            return None

    async def _fail(self, job: Job, error: str, code: str, attempt: int) -> None:
        job.state = "failed"
        await self.emit_for(job, JobFailed(error=error[:2000], code=code, attempt=attempt or None))

    async def _budget_finish(self, job: Job, ending: str) -> None:
        status = {"complete": "complete", "cancelled": "cancelled"}.get(ending, "error")
        try:
            await self.bus.call(b.FINISH, b.JobFinish(job_id=job.job_id, status=status),  # type: ignore[arg-type]
                                b.JobAnswer, BUDGET_TIMEOUT_S)  # fmt: skip
        except ServiceCallError as e:
            if e.code != 404:
                self.log.warning("budget finish failed", extra={"fields": {
                    "job": job.job_id, "error": str(e)}})  # fmt: skip


def _decided(job: Job, advice: JobAdvised) -> None:
    job.decision = DecisionView(target=advice.target, rule=advice.rule, reason=advice.reason,
                                provider=advice.provider)  # fmt: skip
