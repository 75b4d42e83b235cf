"""The scheduler's side of cloud workers: pods as targets, and money reserved
before a remote submit.

**Pods.** :class:`PodTargets` folds ``cloud.pod.ready`` / ``cloud.pod.terminated``
(its own Follower) into the pods that can take a job now. When an attempt
needs a local slot and none is free, :meth:`PodTargets.acquire` waits for
whichever comes first, a local slot or an idle pod (one this instance does not
keep busy); a pod attempt is recorded as ``job.started`` with target
``cloud_pod`` and the pod id as provider, which the cloud ledger counts as the
pod's job (busy, then idle from its end). A ``comfyui`` job runs with the
comfyui executor at the pod's proxy URL; a ``synthetic`` job runs its
synthetic work "on" the pod (it is always ``dry_run``). Other executors never
go to a pod. Two scheduler instances may each send a job to the same pod: a
pod may run two jobs at once then (ComfyUI queues them).

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
import time
from logging import Logger
from typing import Any

import msgspec

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.cloud import (
    RESERVE,
    SETTLE,
    CloudPodReady,
    CloudPodTerminated,
    ReserveAnswer,
    ReserveRequest,
    SettleAnswer,
    SettleRequest,
)
from schemas.scheduler_settings import SchedulerSettings
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError
from services.runtime.follower import Follower
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from services.scheduler.executors.comfyui import ComfyUIExecutor

POD_TARGET = "cloud_pod"
ON_PODS = frozenset({"synthetic", "comfyui"})
CALL_TIMEOUT_S = 5.0
MAX_PODS = 1024


class PodsProjection:
    """Ready pods: id -> [url, dry_run] (a pure fold of ``cloud.pod.*``)."""

    name = "scheduler-pods"
    type_prefix: str | None = "cloud.pod."
    version = 1

    def initial(self) -> dict[str, list[Any]]:
        return {}

    def apply(self, state: dict[str, list[Any]], event: Event) -> dict[str, list[Any]]:
        data = event.payload
        if isinstance(data, CloudPodReady) and len(state) < MAX_PODS:
            state[data.pod_id] = [data.url, data.dry_run]
        elif isinstance(data, CloudPodTerminated):
            state.pop(data.pod_id, None)
        return state

    def to_builtins(self, state: dict[str, list[Any]]) -> Any:
        return dict(sorted(state.items()))

    def from_builtins(self, data: Any) -> dict[str, list[Any]]:
        return msgspec.convert(data, dict[str, list[Any]])


class PodTargets:
    """Pods this scheduler instance may send attempts to; see the module docstring."""

    def __init__(self, bus: Bus, settings: SchedulerSettings, log: Logger) -> None:
        self.follower: Follower[dict[str, list[Any]]] = Follower(
            bus, PodsProjection(), ("cloud.pod.>",), log=log, on_apply=self._on_fold
        )
        self.settings = settings
        self.busy: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._comfy: dict[str, ComfyUIExecutor] = {}

    def _on_fold(self, seq: int, event: Event) -> None:
        self._changed.set()

    def idle(self) -> str | None:
        return next((p for p in self.follower.state if not self.busy.get(p)), None)

    def _take(self, pod: str) -> str:
        self.busy[pod] = self.busy.get(pod, 0) + 1
        return pod

    async def acquire(self, slots: Any, priority: int, executor: str | None) -> str | None:
        """A local slot (None) or an idle pod's id, whichever is free first."""
        if executor not in ON_PODS or slots.free > 0:
            await slots.acquire(priority)
            return None
        pod = self.idle()
        if pod is not None:
            return self._take(pod)
        local = asyncio.ensure_future(slots.acquire(priority))
        while True:
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({local, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if local.done():
                local.result()
                return None
            pod = self.idle()
            if pod is not None:
                local.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await local
                    slots.release()  # granted before the cancel took: give it back
                return self._take(pod)

    def release(self, pod: str | None, slots: Any) -> None:
        if pod is None:
            slots.release()
            return
        self.busy[pod] = self.busy.get(pod, 1) - 1
        if self.busy[pod] <= 0:
            del self.busy[pod]
        self._changed.set()

    def placed(
        self, pod: str | None, executor: Executor, advice: JobAdvised
    ) -> tuple[Executor, JobAdvised]:
        """The executor and the target of an attempt on ``pod`` (as they were if None)."""
        if pod is None or pod not in self.follower.state:
            return executor, advice
        url, dry_run = self.follower.state[pod]
        if executor.name == "comfyui":
            executor = self._comfy.get(url) or self._comfy.setdefault(
                url,
                ComfyUIExecutor(msgspec.structs.replace(self.settings.comfyui, url=url)),
            )
        reason = f"local slots busy: on pod {pod}" + (" (dry_run)" if dry_run else "")
        return executor, JobAdvised(
            target=POD_TARGET, rule=advice.rule, reason=reason, provider=pod
        )

    async def aclose(self) -> None:
        for executor in self._comfy.values():
            await executor.aclose()
        await self.follower.close()


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
