"""The scheduler as a service: jobs submitted, advised, admitted, run, retried.

State: the job table (``table.py``), rebuilt by the runtime Follower from the
store on start and then followed live; leases of the other instances come
from their ``job.lease.renewed`` events. Work:

- ``submit`` (``gpuroute.scheduler.submit``, a ``nats.micro`` queue group, so
  N instances share submits): the instance that takes a job *owns* it. It
  publishes ``job.submitted`` (its event id derived from the idempotency key,
  so a repeated request is dropped by JetStream and answered with the first
  job), waits for the advisor's ``job.advised`` (a core subscription),
  registers the job with the budget (``gpuroute.budget.jobs.*``; no budget
  service or budgets off: ``job.queued`` with that code), and answers.
- ``jobs.Driver`` runs the job's attempts: start (budget start, or a local
  slot), executor, progress, terminal event, budget finish however it ends;
  retries with exponential backoff.
- Leases: while an instance owns live jobs it publishes ``job.lease.renewed``
  every ``lease_s / 3``. Every instance sweeps the table: a live job whose
  owner has been silent for ``lease_s`` is taken over, claimed with an event
  whose id is derived from (job, dead owner, attempt): JetStream accepts it
  once, so exactly one instance wins and runs the next attempt (or fails the
  job when its attempts are spent). Never left ``running`` forever.
- Cancel publishes ``job.cancelled``; the owner sees it folded and cancels
  the attempt's task (the executor undoes its own work).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
from collections import Counter
from typing import get_args

import msgspec
import nats.errors
from nats.aio.msg import Msg

from schemas import Event, decode_event
from schemas.advisor import JobAdvised
from schemas.jobs import JobCancelled, JobFailed, JobSpec, JobSubmitted
from schemas.scheduler import (
    ARTIFACT,
    CANCEL,
    GET,
    LIST,
    MAX_ARTIFACT_INLINE,
    STATS,
    SUBMIT,
    ArtifactBody,
    ArtifactRef,
    DecisionCount,
    JobAccepted,
    JobLeaseRenewed,
    JobList,
    JobRef,
    JobRequest,
    JobRetried,
    JobsQuery,
    JobView,
    SchedulerStats,
    State,
    StatsRequest,
)
from schemas.strict import strict
from schemas.subjects import STORE_READ
from schemas.system import StoreReadRequest, decode_page
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.endpoints import EndpointError, InFlight, endpoint
from services.runtime.errors import BusError
from services.runtime.follower import Follower
from services.runtime.ids import derived_id, id_ms
from services.scheduler.cloud import PodTargets, capped
from services.scheduler.executors.base import Executor
from services.scheduler.jobs import Driver, Job
from services.scheduler.table import JobRow, JobTable, JobTableProjection

MAX_IN_FLIGHT = 512
FOLLOWED = ("job.>",)
ENDED = frozenset({"job.succeeded", "job.failed", "job.cancelled"})
ACCEPTED_KEPT = 4096
RECENT_ID_S = 10.0
"""A job id minted this recently that the table lacks may be another instance's
just-accepted job: a get or cancel waits (up to 2 s) for its events."""
"""How many recently accepted job ids an instance remembers for read-your-writes."""


class SchedulerService(Driver):
    name = "scheduler"
    description = "Runs jobs (comfyui, command, remote, synthetic): lifecycle, leases, retries."

    def __init__(
        self, bus: Bus, config: Config, executors: dict[str, Executor] | None = None
    ) -> None:
        super().__init__(bus, config)
        self.executors = executors if executors is not None else self._build_executors()
        self.leases: dict[str, float] = {}
        self.follower = Follower(bus, JobTableProjection(), FOLLOWED, log=self.log,
                                 on_apply=self._on_fold)  # fmt: skip
        self.cloud = PodTargets(bus, self.settings, self.log, config.cloud, self.instance)
        self._folded = asyncio.Event()
        self._accepted_ids: dict[str, None] = {}  # insertion-ordered, bounded

    def _build_executors(self) -> dict[str, Executor]:
        from services.scheduler.executors import build_executors

        return capped(build_executors(self.settings, self.config.data_path, self.bus), self.bus)

    @property
    def table(self) -> JobTable:
        return self.follower.state

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        assert self.micro is not None
        self._advice_sub = await self.bus.nc.subscribe("job.advised", cb=self._on_advised)
        in_flight = InFlight(MAX_IN_FLIGHT, self.spawn)
        for name, subject, request_type, handler in (
            ("submit", SUBMIT, strict(JobRequest), self.submit),
            ("list", LIST, JobsQuery, self.list_jobs),
            ("get", GET, JobRef, self.get_job),
            ("cancel", CANCEL, JobRef, self.cancel),
            ("artifact", ARTIFACT, ArtifactRef, self.artifact),
            ("stats", STATS, StatsRequest, self.stats),
        ):
            await self.micro.add_endpoint(
                name=name, subject=subject,
                handler=endpoint(request_type, handler, in_flight=in_flight),  # type: ignore[arg-type]
            )  # fmt: skip
        self.supervise(self.writer.run, "writer")
        self.supervise(self.follower.run, "follow")
        self.supervise(self.cloud.follower.run, "pods")
        self.supervise(self._lease_loop, "leases")

    async def teardown(self) -> None:
        for job in list(self.jobs.values()):
            if job.task is not None:
                job.task.cancel()
        tasks = [j.task for j in self.jobs.values() if j.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for executor in self.executors.values():
            await executor.aclose()
        await self.cloud.aclose()
        await self.follower.close()

    def _on_fold(self, seq: int, event: Event) -> None:
        self._folded.set()
        if event.type in ENDED:  # something freed: waiting jobs ask the advisor again
            self.wake_waiting()
        data = event.payload
        if isinstance(data, JobLeaseRenewed):
            self.leases[data.instance] = max(self.leases.get(data.instance, 0.0),
                                             event.ts + data.ttl_s)  # fmt: skip
        elif isinstance(data, JobCancelled):
            job = self.jobs.get(event.key)
            if job is not None and job.task is not None and not job.task.done():
                job.cancel_reason = data.reason or "cancelled"
                job.task.cancel()

    async def _on_advised(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # the store dead-letters it
        job = self.jobs.get(event.key)
        if job is not None and isinstance(event.payload, JobAdvised) and not job.advised.done():
            job.advised.set_result(event.payload)

    # -- endpoints -------------------------------------------------------------

    async def submit(self, req: JobRequest) -> JobAccepted:
        await self.follower.require_ready(self.name)
        if req.executor not in self.executors:
            have = ", ".join(sorted(self.executors)) or "none"
            raise EndpointError(400, f"executor {req.executor!r} is not available here ({have})")
        key = req.idempotency_key
        job_id = derived_id(key, "job") if key else self.bus.ids.new()
        if job_id in self.jobs or job_id in self.table:
            return await self._accepted(job_id, created=False)
        spec = JobSpec(**{f: getattr(req, f) for f in JobSpec.__struct_fields__})
        request = JobSubmitted(
            spec=spec, executor=req.executor, payload=req.payload, idempotency_key=key,
            max_attempts=req.max_attempts, timeout_s=req.timeout_s, priority=req.priority,
            owner=self.instance,
        )  # fmt: skip
        job = Job(job_id, request, asyncio.get_running_loop())
        self.own(job)
        event = self.bus.event(request, key=job_id)
        if key:
            event = msgspec.structs.replace(event, id=derived_id(job_id, "submitted"))
        try:
            created = await self.claim(event) if key else await self._publish_new(event)
        except BaseException:
            self.disown(job_id)
            raise
        if not created:  # another instance took the same key first
            self.disown(job_id)
            return await self._accepted(job_id, created=False)
        self._accepted_ids[job_id] = None
        while len(self._accepted_ids) > ACCEPTED_KEPT:
            del self._accepted_ids[next(iter(self._accepted_ids))]
        job.task = asyncio.create_task(self.drive(job, first_attempt=1))
        return await self._accepted(job_id, created=True)

    async def _accepted(self, job_id: str, *, created: bool) -> JobAccepted:
        job = self.jobs.get(job_id)
        if job is not None:
            if not job.answered.done():  # asyncio.wait never cancels what it waits for
                await asyncio.wait((job.answered,), timeout=self.settings.advise_timeout_s)
            return JobAccepted(job_id=job_id, state=job.state, created=created,
                               decision=job.decision, budget=job.budget)  # fmt: skip
        row = self.table.get(job_id)
        if row is None:
            return JobAccepted(job_id=job_id, state="submitted", created=created)
        full = row.view()
        return JobAccepted(job_id=job_id, state=full.state, created=created,
                           decision=full.decision, budget=full.budget)  # fmt: skip

    async def list_jobs(self, q: JobsQuery) -> JobList:
        await self.follower.require_ready(self.name)
        rows = sorted(self.table.values(), key=lambda r: (r.submitted_ts or 0.0, r.job_id),
                      reverse=True)  # fmt: skip
        if q.after is not None:
            after = self.table.get(q.after)
            if after is None:
                raise EndpointError(404, f"no job {q.after!r} (after)")
            mark = (after.submitted_ts or 0.0, after.job_id)
            rows = [r for r in rows if (r.submitted_ts or 0.0, r.job_id) < mark]
        if q.state is not None:
            rows = [r for r in rows if r.state == q.state]
        page = rows[: q.limit]
        return JobList(jobs=[r.view() for r in page], more=len(rows) > q.limit)

    def _row(self, job_id: str) -> JobRow:
        row = self.table.get(job_id)
        if row is None:
            raise EndpointError(404, f"no job {job_id!r}")
        return row

    async def get_job(self, ref: JobRef) -> JobView:
        await self.follower.require_ready(self.name)
        if self._known_unfolded(ref.id):
            await self._wait_folded(ref.id)
        return self._row(ref.id).view()

    def _known_unfolded(self, job_id: str) -> bool:
        """A job whose events the table may not have folded yet: one this instance
        accepted (it may even have ended already), or an id minted in the last
        ``RECENT_ID_S`` seconds, which another instance may just have accepted
        (the gateway's GET after its POST can reach either). A read waits for
        them instead of answering 404; an old unknown id is a 404 at once."""
        if job_id in self.table:
            return False
        if job_id in self.jobs or job_id in self._accepted_ids:
            return True
        ms = id_ms(job_id)
        return ms is not None and abs(self.clock.now() - ms / 1000) < RECENT_ID_S

    async def _wait_folded(self, job_id: str, timeout: float = 2.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while job_id not in self.table and loop.time() < deadline:
            self._folded.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._folded.wait(), deadline - loop.time())

    async def cancel(self, ref: JobRef) -> JobView:
        await self.follower.require_ready(self.name)
        if self._known_unfolded(ref.id):
            await self._wait_folded(ref.id)
        row = self._row(ref.id)
        if row.terminal:
            raise EndpointError(409, f"job {ref.id} already ended: {row.state}")
        event = self.bus.event(JobCancelled(reason="cancelled on request"), key=ref.id)
        await self.follower.publish_and_wait([event], self.settings.advise_timeout_s)
        return self._row(ref.id).view()

    async def stats(self, _: StatsRequest) -> SchedulerStats:
        """Counts of the job table for ``/metrics``; a loading table is a 503 at
        once (a scrape waits for nobody)."""
        await self.follower.require_ready(self.name, grace=0)
        jobs = dict.fromkeys(get_args(State), 0)
        decided: Counter[tuple[str, str]] = Counter()
        for row in self.table.values():
            jobs[row.state] = jobs.get(row.state, 0) + 1
            if row.rule is not None and row.target is not None:
                decided[(row.rule, row.target)] += 1
        decisions = [DecisionCount(rule=r, target=t, count=n)
                     for (r, t), n in sorted(decided.items())]  # fmt: skip
        return SchedulerStats(jobs=jobs, decisions=decisions, position=self.follower.position)

    async def artifact(self, ref: ArtifactRef) -> ArtifactBody:
        await self.follower.require_ready(self.name)
        row = self._row(ref.id)
        base = ref.name.removesuffix(".json")
        if base not in row.artifacts:
            raise EndpointError(404, f"job {ref.id} has no artifact {base!r}")
        path = self.config.data_path / "jobs" / ref.id / str(row.attempts) / "artifacts" / ref.name
        try:
            size = path.stat().st_size
            if size > MAX_ARTIFACT_INLINE:
                raise EndpointError(413, f"{ref.name} is {size} bytes, over the "
                                         f"{MAX_ARTIFACT_INLINE} sent inline: read {path} on "
                                         "the scheduler's machine")  # fmt: skip
            data = path.read_bytes()
        except OSError as e:
            raise EndpointError(404, f"artifact {ref.name} of job {ref.id} is not on this "
                                     f"scheduler's disk: {e.strerror}") from e  # fmt: skip
        kind = (
            "application/json"
            if ref.name.endswith(".json")
            else (mimetypes.guess_type(ref.name)[0] or "application/octet-stream")
        )
        return ArtifactBody(name=ref.name, content_type=kind, size=size,
                            data=base64.b64encode(data).decode())  # fmt: skip

    # -- leases ----------------------------------------------------------------

    async def _lease_loop(self) -> None:
        await self.follower.loaded.wait()
        self.follower.ready.set()
        period = self.settings.lease_s / 3
        while True:
            if any(not j.done for j in self.jobs.values()):
                await self.bus.emit(JobLeaseRenewed(instance=self.instance,
                                                    ttl_s=self.settings.lease_s,
                                                    running=self.running),
                                    key=self.instance)  # fmt: skip
            await self._sweep()
            self._depth_changed()  # the first tick says 0: a restarted instance owns nothing
            await asyncio.sleep(period)

    async def _sweep(self) -> None:
        now = self.clock.now()
        for row in list(self.table.values()):
            if row.terminal or row.executor is None or row.owner in (None, self.instance):
                continue
            owner = row.owner or ""
            expires = max(self.leases.get(owner, 0.0), row.updated_ts + self.settings.lease_s)
            if expires < now:
                await self._take_over(row, owner, now - expires)

    async def _take_over(self, row: JobRow, owner: str, late_s: float) -> None:
        """Claim ``row`` from its silent ``owner``: one instance wins (derived id)."""
        was_running = row.state == "running"
        attempt = row.attempts + 1 if was_running else max(row.attempts, 1)
        reason = (
            f"lease expired: scheduler instance {owner} silent for "
            f"{self.settings.lease_s + late_s:.1f}s (lease {self.settings.lease_s:g}s)"
        )
        claim_id = derived_id(row.job_id, f"takeover:{owner}:{row.attempts}")
        if was_running and row.attempts - row.rerouted_attempts >= max(row.max_attempts, 1):
            failed = JobFailed(
                error=f"{reason}; {row.attempts} of {row.max_attempts} attempts spent",
                code="lease_expired",
                attempt=row.attempts,
            )
            event = self.bus.event(failed, key=row.job_id)
            await self.claim(msgspec.structs.replace(event, id=claim_id))
            return
        retried = JobRetried(attempt=attempt, delay_s=0.0, reason=reason, owner=self.instance)
        event = msgspec.structs.replace(self.bus.event(retried, key=row.job_id), id=claim_id)
        if not await self.claim(event):
            return
        request = await self._submitted(row.job_id)
        if request is None:
            self.log.error("taken-over job has no job.submitted in the store",
                           extra={"fields": {"job": row.job_id}})  # fmt: skip
            return
        job = Job(row.job_id, request, asyncio.get_running_loop())
        self.own(job)
        self.log.warning(reason, extra={"fields": {"job": row.job_id, "attempt": attempt}})
        job.task = asyncio.create_task(self.drive(job, first_attempt=attempt, row=row))

    async def _submitted(self, job_id: str) -> JobSubmitted | None:
        query = StoreReadRequest(key=job_id, type="job.submitted", limit=1)
        raw = await self.bus.call_raw(STORE_READ, msgspec.json.encode(query))
        for stored in decode_page(raw).events:
            event = decode_event(bytes(stored.event))
            if isinstance(event.payload, JobSubmitted):
                return event.payload
        return None

    async def _publish_new(self, event: Event) -> bool:
        """Publish an event with a fresh id (no other instance can hold it) through
        the writer; True."""
        try:
            await self.writer.publish(event)
        except BusError as e:
            raise EndpointError(503, f"cannot publish {event.type}: {e}") from e
        return True

    async def claim(self, event: Event) -> bool:
        """Publish ``event``; False when JetStream already held its id (another
        instance made the same claim first)."""
        payload = self.bus._encode(event)  # the size check of every publish
        try:
            ack = await self.bus.js.publish(event.type, payload, headers={"Nats-Msg-Id": event.id})
        except nats.errors.Error as e:
            raise EndpointError(503, f"cannot publish {event.type}: {e}") from e
        return not ack.duplicate
