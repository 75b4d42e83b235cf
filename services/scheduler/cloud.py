"""The scheduler's side of cloud workers: where an attempt goes when no local
slot is free, and money reserved before a remote submit.

**Routing** (:meth:`PodTargets.acquire`, for ``synthetic`` and ``comfyui``
jobs; local first):

1. a free local slot: local;
2. else an idle ready pod, claimed at the cloud service (``gpuroute.cloud.claim``:
   its one writer grants the least used idle pod, so two scheduler instances
   never send two jobs to one pod at once and jobs spread over the pods); the
   attempt is ``job.started`` target ``cloud_pod``, provider the pod id; a
   ``comfyui`` job runs at the pod's proxy URL, a ``synthetic`` one "on" it
   (dry_run); the pod is released (``gpuroute.cloud.release``) when it ends; the
   claim is leased like the instance's jobs (``lease_s``, renewed by its
   ``job.lease.renewed``), so an instance that dies holding it frees the pod;
3. else serverless, for a one-off job (``spec.batch`` 1) when
   ``features.enable_compute`` is on, ``prefer_serverless`` is set and more jobs
   wait here for a slot than ``autoscale_threshold``: the ``remote`` executor
   (behind the reservation below) at the adapters' ``runpod`` provider, the job's
   payload as the serverless ``input``; ``job.started`` target ``serverless``;
4. else wait for whichever comes first, a local slot or a pod the autoscaler
   makes ready (batches end up here: pods are for batches).

Once ``cloud.cost_limit_reached`` for today (UTC, the bus clock) is folded,
steps 2 and 3 are skipped: routing stays local until the next day (an attempt
that raced the cap is refused by the cloud service and falls back as below).

Each cloud attempt's ``job.started`` carries the ``reason`` with its numbers. A
serverless attempt that fails falls back: ``job.rerouted`` (from ``serverless``
to ``cloud_pod``) and the next attempt, which does not count against
``max_attempts``, takes a pod (or a local slot, whichever is free first), never
serverless again. The settings are the config's ``[cloud]``, then the last
``cloud.config.updated``; the flag is ``flags.changed``'s (its own Follower).

**Money.** :class:`CappedRemote` wraps the ``remote`` executor: before each
submit it asks the cloud service to reserve the call's worst case
(``gpuroute.cloud.reserve``: the attempt's ``timeout_s`` at the serverless
price); refused (past the daily cap) the attempt fails with code ``cost_cap``,
not retryable; no answer, the attempt fails retryable with nothing spent. When
the call ends the used seconds are settled (``gpuroute.cloud.settle``; a
dry-run call used none) and the rest is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping
from logging import Logger
from typing import Any, Protocol

import msgspec

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.cloud import (
    CLAIM,
    RELEASE,
    RESERVE,
    SETTLE,
    ClaimAnswer,
    ClaimRequest,
    CloudConfigUpdated,
    CloudCostLimitReached,
    CloudPodClaimed,
    CloudPodReady,
    CloudPodReleased,
    CloudPodTerminated,
    ReleaseAnswer,
    ReleaseRequest,
    ReserveAnswer,
    ReserveRequest,
    SettleAnswer,
    SettleRequest,
)
from schemas.cloud_settings import CloudSettings
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from schemas.jobs import JobSubmitted
from schemas.scheduler import JobRerouted
from schemas.scheduler_settings import SchedulerSettings
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError
from services.runtime.follower import Follower
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from services.scheduler.executors.comfyui import ComfyUIExecutor

POD_TARGET = "cloud_pod"
SERVERLESS = "serverless"
"""``job.started`` target of a serverless attempt (and the ``job.pod`` marking it)."""
SERVERLESS_PROVIDER = "runpod"
ON_PODS = frozenset({"synthetic", "comfyui"})
CALL_TIMEOUT_S = 5.0
MAX_PODS = 1024
MAX_TRACKED = 65_536
"""Jobs whose next attempt must not go serverless (bounded; oldest forgotten)."""
MAX_LIMIT_DAYS = 31
"""UTC days whose cap was reached that the view keeps (the newest)."""


class CloudView(msgspec.Struct, kw_only=True):
    """What the scheduler folds of the cloud: ready pods (id -> [url, dry_run]),
    the pods claimed now, ``features.enable_compute``, the last settings and the
    UTC days whose cap was reached (``cloud.cost_limit_reached``)."""

    pods: dict[str, list[Any]] = {}
    claimed: dict[str, str] = {}
    compute: bool = False
    settings: dict[str, Any] | None = None
    limit_days: list[str] = []


class CloudViewProjection:
    """A pure fold of ``cloud.pod.*``, ``cloud.config.updated``,
    ``cloud.cost_limit_reached`` and ``flags.changed``."""

    name = "scheduler-cloud"
    type_prefix: str | None = None
    version = 3
    patterns = ("cloud.pod.>", "cloud.config.updated", "cloud.cost_limit_reached",
                "flags.changed")  # fmt: skip

    def initial(self) -> CloudView:
        return CloudView()

    def apply(self, state: CloudView, event: Event) -> CloudView:
        match event.payload:
            case CloudPodReady(pod_id=pod, url=url, dry_run=dry) if len(state.pods) < MAX_PODS:
                state.pods[pod] = [url, dry]
            case CloudPodTerminated(pod_id=pod):
                state.pods.pop(pod, None)
                state.claimed.pop(pod, None)
            case CloudPodClaimed(pod_id=pod, job_id=job) if pod in state.pods:
                state.claimed[pod] = job
            case CloudPodReleased(pod_id=pod, job_id=job) if state.claimed.get(pod) == job:
                del state.claimed[pod]
            case CloudConfigUpdated(settings=settings):
                state.settings = dict(settings)
            case CloudCostLimitReached(day=day) if day not in state.limit_days:
                state.limit_days = [*state.limit_days[1 - MAX_LIMIT_DAYS :], day]
            case FlagsChanged(flags=flags) if ENABLE_COMPUTE in flags:
                state.compute = flags[ENABLE_COMPUTE]
        return state

    def to_builtins(self, state: CloudView) -> Any:
        return msgspec.to_builtins(state, order="sorted")

    def from_builtins(self, data: Any) -> CloudView:
        return msgspec.convert(data, CloudView)


class Attempting(Protocol):
    """What routing reads of a job (``services.scheduler.jobs.Job``)."""

    job_id: str
    request: JobSubmitted
    pod: str | None


class PodTargets:
    """Where this instance's attempts go when no local slot is free; see the module
    docstring."""

    def __init__(
        self, bus: Bus, settings: SchedulerSettings, log: Logger,
        cloud: CloudSettings | None = None, instance: str | None = None,
    ) -> None:  # fmt: skip
        projection = CloudViewProjection()
        self.follower: Follower[CloudView] = Follower(
            bus, projection, projection.patterns, log=log, on_apply=self._on_fold
        )
        self.bus = bus
        self.log = log
        self.settings = settings
        self.cloud = cloud or CloudSettings()
        self.instance = instance
        self.waiting = 0
        """Attempts of this instance waiting for a local slot or a pod now."""
        self._changed = asyncio.Event()
        self._comfy: dict[str, ComfyUIExecutor] = {}
        self._claims: dict[str, tuple[str, bool]] = {}
        self._why: dict[str, str] = {}
        self._no_serverless: dict[str, None] = {}
        self._remote: Executor | None = None
        self._releases: set[asyncio.Task[None]] = set()

    def _on_fold(self, seq: int, event: Event) -> None:
        self._changed.set()

    def _setting(self, key: str) -> Any:
        raw = self.follower.state.settings
        return raw[key] if raw is not None and key in raw else getattr(self.cloud, key)

    def _past_cap(self) -> bool:
        """Today's (UTC, the bus clock's) cap was reached: no cloud attempt today."""
        day = time.strftime("%Y-%m-%d", time.gmtime(self.bus.clock.now()))
        return day in self.follower.state.limit_days

    def _idle_seen(self) -> bool:
        view = self.follower.state
        return any(p not in view.claimed for p in view.pods) and not self._past_cap()

    def _serverless(self, job: Attempting, remote: Executor | None) -> str | None:
        """Why this attempt goes serverless now, or None."""
        threshold = int(self._setting("autoscale_threshold"))
        if (remote is None or not self.follower.state.compute or job.request.spec.batch > 1
                or not self._setting("prefer_serverless") or self.waiting <= threshold
                or job.job_id in self._no_serverless or self._past_cap()):  # fmt: skip
            return None
        return (f"local slots busy ({self.waiting} waiting > autoscale_threshold {threshold}), "
                "no idle pod; a one-off job (batch 1) with prefer_serverless: RunPod "
                "serverless")  # fmt: skip

    async def _claim(self, job: Attempting) -> str | None:
        try:
            claim = ClaimRequest(job_id=job.job_id, instance=self.instance,
                                 lease_s=self.settings.lease_s)  # fmt: skip
            answer = await self.bus.call(CLAIM, claim, ClaimAnswer, CALL_TIMEOUT_S)
        except ServiceCallError as e:
            self.log.warning("no pod claim: the cloud service did not answer",
                             extra={"fields": {"job": job.job_id, "error": str(e)}})  # fmt: skip
            return None
        if not answer.ok or answer.pod_id is None or answer.url is None:
            return None
        self._claims[answer.pod_id] = (answer.url, answer.dry_run)
        self._why[job.job_id] = (f"local slots busy: on pod {answer.pod_id} (claimed)"
                                 + (" (dry_run)" if answer.dry_run else ""))  # fmt: skip
        return answer.pod_id

    async def acquire(
        self, slots: Any, job: Attempting, executors: Mapping[str, Executor]
    ) -> str | None:
        """A local slot (None), a claimed pod's id or :data:`SERVERLESS`."""
        request = job.request
        if request.executor not in ON_PODS or slots.free > 0:
            await slots.acquire(request.priority)
            return None
        self.waiting += 1
        local: asyncio.Future[None] | None = None
        try:
            while True:
                self._changed.clear()
                pod = await self._claim(job) if self._idle_seen() else None
                if pod is not None:
                    return pod
                remote = executors.get("remote")
                why = self._serverless(job, remote) if local is None else None
                if why is not None:
                    self._why[job.job_id], self._remote = why, remote
                    return SERVERLESS
                local = local or asyncio.ensure_future(slots.acquire(request.priority))
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({local, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if local.done():
                    local.result()
                    local = None
                    return None
        finally:
            self.waiting -= 1
            self._no_serverless.pop(job.job_id, None)
            if local is not None:
                local.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await local
                    slots.release()  # granted before the cancel took: give it back

    def release(self, pod: str | None, slots: Any, job_id: str = "") -> None:
        """The attempt ended: its local slot, or its pod (released at the cloud service)."""
        if pod is None:
            slots.release()
        elif pod != SERVERLESS and self._claims.pop(pod, None) is not None:
            task = asyncio.ensure_future(self._release(pod, job_id))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release(self, pod: str, job_id: str) -> None:
        with contextlib.suppress(ServiceCallError):  # the job's end frees it too
            await self.bus.call(RELEASE, ReleaseRequest(pod_id=pod, job_id=job_id),
                                ReleaseAnswer, CALL_TIMEOUT_S)  # fmt: skip

    def placed(
        self, job: Attempting, executor: Executor, advice: JobAdvised
    ) -> tuple[Executor, JobAdvised]:
        """The executor and the target of the job's attempt (as they were if local)."""
        pod = job.pod
        if pod is None:
            return executor, advice
        reason = self._why.pop(job.job_id, "")
        if pod == SERVERLESS and self._remote is not None:
            return OnServerless(self._remote), JobAdvised(
                target=SERVERLESS, rule=advice.rule, reason=reason, provider=SERVERLESS_PROVIDER
            )
        url, _ = self._claims.get(pod, ("", True))
        if executor.name == "comfyui":
            executor = self._comfy.get(url) or self._comfy.setdefault(
                url,
                ComfyUIExecutor(msgspec.structs.replace(self.settings.comfyui, url=url)),
            )
        return executor, JobAdvised(target=POD_TARGET, rule=advice.rule, reason=reason,
                                    provider=pod)  # fmt: skip

    def fallback(self, job: Attempting, outcome: Outcome) -> JobRerouted | None:
        """After a failed serverless attempt: the reroute to a pod (the next attempt
        will not go serverless), else None."""
        if job.pod != SERVERLESS or outcome.status == "succeeded":
            return None
        if len(self._no_serverless) >= MAX_TRACKED:
            self._no_serverless.pop(next(iter(self._no_serverless)))
        self._no_serverless[job.job_id] = None
        return JobRerouted(from_target=SERVERLESS, from_provider=SERVERLESS_PROVIDER,
                           to_target=POD_TARGET, reason=f"serverless failed: {outcome.reason}; "
                           "the next attempt takes a pod (or a local slot, whichever is free "
                           "first)")  # fmt: skip

    async def aclose(self) -> None:
        if self._releases:
            await asyncio.wait(self._releases, timeout=CALL_TIMEOUT_S)
        for executor in self._comfy.values():
            await executor.aclose()
        await self.follower.close()


class OnServerless(Executor):
    """A ``synthetic``/``comfyui`` job at the serverless endpoint: the ``remote``
    executor with the job's payload as the provider's ``input`` (a ComfyUI
    workflow as ``{"workflow": ...}``, as RunPod's worker-comfyui reads it)."""

    name = "remote"

    def __init__(self, remote: Executor) -> None:
        self.remote = remote

    async def run(self, run: Run, progress: Progress) -> Outcome:
        payload = run.payload if isinstance(run.payload, dict) else {"payload": run.payload}
        if _is_workflow(payload):
            payload = {"workflow": payload}
        moved = dataclasses.replace(run, payload={"input": payload},
                                    provider=SERVERLESS_PROVIDER)  # fmt: skip
        return await self.remote.run(moved, progress)

    async def health(self) -> dict[str, Any]:
        return await self.remote.health()


def _is_workflow(payload: dict[str, Any]) -> bool:
    """A ComfyUI API-format workflow: node ids mapping to ``{"class_type": ...}``."""
    return bool(payload) and all(
        isinstance(v, dict) and "class_type" in v for v in payload.values()
    )


class CappedRemote(Executor):
    """The remote executor behind a reservation of the day's cloud money."""

    name = "remote"

    def __init__(self, inner: Executor, bus: Bus) -> None:
        self.inner = inner
        self.bus = bus

    async def run(self, run: Run, progress: Progress) -> Outcome:
        ref = f"{run.job_id}-{run.attempt}"
        req = ReserveRequest(ref=ref, job_id=run.job_id, max_s=run.timeout_s)
        try:
            held = await self.bus.call(RESERVE, req, ReserveAnswer, CALL_TIMEOUT_S)
        except ServiceCallError as e:
            return Outcome(status="failed", retryable=True, details={"code": "no_cloud"},
                           reason=f"not submitted (nothing spent): the cloud service did not "
                                  f"reserve the call: {e.description}")  # fmt: skip
        if not held.ok:
            return Outcome(status="failed", retryable=False, details={"code": "cost_cap"},
                           reason=f"not submitted: {held.reason}")  # fmt: skip
        started = time.monotonic()
        outcome = Outcome(status="failed", retryable=True, reason="cancelled")
        try:
            outcome = await self.inner.run(run, progress)
            return outcome
        finally:
            used = 0.0 if outcome.dry_run else time.monotonic() - started
            settle = SettleRequest(ref=ref, billed_s=min(used, 86_400.0), job_id=run.job_id,
                                   dry_run=outcome.dry_run)  # fmt: skip
            with contextlib.suppress(ServiceCallError):
                await asyncio.shield(self.bus.call(SETTLE, settle, SettleAnswer, CALL_TIMEOUT_S))

    async def health(self) -> dict[str, Any]:
        return await self.inner.health()

    async def aclose(self) -> None:
        await self.inner.aclose()


def capped(executors: dict[str, Executor], bus: Bus) -> dict[str, Executor]:
    """``executors`` with the remote one behind the cloud reservation."""
    remote = executors.get("remote")
    if remote is None or isinstance(remote, CappedRemote):
        return executors
    return {**executors, "remote": CappedRemote(remote, bus)}
