"""The cloud ledger: a pure fold of ``cloud.*``, ``job.*`` and ``flags.changed`` events.

What it knows: every pod (status, price, spawn/ready/end times, jobs run, the
job it runs now, since when it is idle), what each pod and serverless call cost,
the totals per UTC day (of the event's ``ts``) and per provider, the money still
held per ref (a reservation not spent yet), the jobs waiting (submitted, queued
or delayed, not running: the autoscaler's queue), ``features.enable_compute``
and the settings of the last ``cloud.config.updated``.

Money is integer micro-dollars (µUSD), so sums are exact and a replay gives the
same totals byte for byte. Costs are computed here from the events themselves:

- a pod: ``cost_per_hour`` x billed seconds, the whole seconds from its
  ``cloud.pod.spawned`` to the event (``cloud.cost.updated`` or
  ``cloud.pod.terminated``), rounded up; the part not counted before is spent
  on the event's day;
- a serverless call: its reservation's per-second price x ``billed_s``
  (RunPod bills whole seconds, rounded up).

Spent money first uses up what its ref held (``outstanding``); so while the
cloud service checks before a reservation runs out, reserved + spent of a day
never pass the cap it checked them against (services/cloud/cap.py).

A pod claim is leased (``cloud.pod.claimed``'s ``lease_s``, renewed by the
claiming scheduler's ``job.lease.renewed``): :meth:`Ledger.claim_expires` says
until when; the cloud service releases a pod whose claim has expired.

Cloud events carry ``n``, the cloud service's change number: it applies its
own events as it writes them and this fold skips those that come back (``n`` at
most the state's). Job events have no ``n`` and only move counters.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec

from schemas import Event
from schemas.cloud import (
    CloudConfigUpdated,
    CloudCostLimitReached,
    CloudCostReleased,
    CloudCostReserved,
    CloudCostUpdated,
    CloudPodClaimed,
    CloudPodReady,
    CloudPodReleased,
    CloudPodSpawned,
    CloudPodTerminated,
)
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from schemas.jobs import JobCancelled, JobFailed, JobStarted, JobSubmitted, JobSucceeded
from schemas.scheduler import JobLeaseRenewed, JobRetried

MICRO = 1_000_000
POD_TARGET = "cloud_pod"
"""``JobStarted.target`` of an attempt run on a pod (its ``provider``: the pod id)."""
SERVERLESS = "serverless"
MAX_ENDED_PODS = 1000
"""Terminated pods kept in the table (their costs stay in the totals)."""
MAX_WAITING = 1_000_000
MAX_LEASES = 1024
"""Scheduler instances whose lease is remembered; past it the one expiring first
is forgotten (its claims then hold for their own ``lease_s``)."""
LIVE = ("PROVISIONING", "STARTING", "RUNNING")


def micro(usd: float) -> int:
    return round(usd * MICRO)


def usd(u: int) -> float:
    return u / MICRO


def day_of(ts: float) -> str:
    """The UTC day of a unix time, ``YYYY-MM-DD`` (no clock: the event's ``ts``)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def billed_seconds(start: float, end: float) -> int:
    """Whole seconds from ``start`` to ``end``, rounded up (never negative)."""
    return max(0, math.ceil(round(end - start, 6)))


def pod_cost_u(price_per_hour: float, billed_s: int) -> int:
    """µUSD of ``billed_s`` seconds at ``price_per_hour`` USD, rounded up."""
    return -(-micro(price_per_hour) * billed_s // 3600)


def call_cost_u(price_per_s: float, billed_s: int) -> int:
    return micro(price_per_s) * billed_s


class Pod(msgspec.Struct, kw_only=True):
    pod_id: str
    status: str = "PROVISIONING"
    gpu_type: str = ""
    cost_per_hour: float = 0.0
    spawned_ts: float = 0.0
    ready_ts: float | None = None
    ended_ts: float | None = None
    url: str | None = None
    instance: str | None = None
    dry_run: bool = False
    cost_u: int = 0
    billed_s: int = 0
    jobs: int = 0
    claims: int = 0
    """Attempts granted the pod (the claim picks the least used: jobs spread)."""
    busy: str | None = None
    """The job whose attempt has claimed the pod (``cloud.pod.claimed``), until
    ``cloud.pod.released`` or the job's end."""
    claimed_ts: float = 0.0
    claim_instance: str | None = None
    claim_lease_s: float = 0.0
    idle_since: float | None = None


class Held(msgspec.Struct, kw_only=True):
    """Money held for a ref: ``outstanding`` µUSD counted against ``day``."""

    day: str
    outstanding: int = 0
    price: float = 0.0
    kind: str = "pod"
    job_id: str | None = None


class Ledger(msgspec.Struct, kw_only=True):
    n: int = 0
    pods: dict[str, Pod] = {}
    held: dict[str, Held] = {}
    spent_day: dict[str, int] = {}
    spent_provider: dict[str, int] = {}
    cost_by: dict[str, int] = {}
    """µUSD per pod id, and ``serverless`` for every call."""
    jobs_processed: int = 0
    """Jobs ended on a pod or at the serverless endpoint."""
    jobs_ended: int = 0
    """Jobs ended anywhere (local, cloud): the share the cloud took."""
    on_pod: dict[str, str] = {}
    """Running job -> the pod it runs on."""
    waiting: dict[str, None] = {}
    limit_days: list[str] = []
    compute: bool = False
    settings: dict[str, Any] | None = None
    leases: dict[str, float] = {}
    """Scheduler instance -> until when its ``job.lease.renewed`` holds (unix s)."""

    # -- reads ---------------------------------------------------------------

    def claim_expires(self, pod: Pod) -> float:
        """Until when ``pod``'s claim holds: its own lease from the claim, or the
        claiming instance's newest scheduler lease, whichever is later."""
        renewed = self.leases.get(pod.claim_instance or "", 0.0)
        return max(pod.claimed_ts + pod.claim_lease_s, renewed)

    def spent(self, day: str) -> int:
        return self.spent_day.get(day, 0)

    def reserved(self, day: str) -> int:
        return sum(h.outstanding for h in self.held.values() if h.day == day)

    def live_pods(self) -> list[Pod]:
        return [p for p in self.pods.values() if p.status in LIVE]

    def total_u(self) -> int:
        return sum(self.cost_by.values())


def _spend(state: Ledger, ref: str, provider: str, day: str, delta: int) -> None:
    if delta <= 0:
        return
    state.spent_day[day] = state.spent_day.get(day, 0) + delta
    state.spent_provider[provider] = state.spent_provider.get(provider, 0) + delta
    held = state.held.get(ref)
    if held is not None:
        held.outstanding = max(0, held.outstanding - delta)


def _pod_accrue(state: Ledger, pod: Pod, ts: float) -> None:
    billed = billed_seconds(pod.spawned_ts, ts)
    if billed <= pod.billed_s:
        return
    cost = pod_cost_u(pod.cost_per_hour, billed)
    delta, pod.cost_u, pod.billed_s = cost - pod.cost_u, cost, billed
    state.cost_by[pod.pod_id] = cost
    _spend(state, pod.pod_id, "runpod-pod", day_of(ts), delta)


def _cloud(state: Ledger, event: Event, data: Any) -> None:
    match data:
        case CloudCostReserved():
            held = state.held.get(data.ref)
            if held is None:
                held = state.held[data.ref] = Held(day=data.day, kind=data.kind,
                                                   job_id=data.job_id)  # fmt: skip
            held.day = data.day  # what is still held counts against the newest day
            held.outstanding += micro(data.amount_usd)
            held.price = data.price
        case CloudCostReleased():
            state.held.pop(data.ref, None)
        case CloudPodSpawned():
            state.pods[data.pod_id] = Pod(
                pod_id=data.pod_id, gpu_type=data.gpu_type, cost_per_hour=data.cost_per_hour,
                spawned_ts=event.ts, instance=data.instance, dry_run=data.dry_run,
            )  # fmt: skip
            state.cost_by.setdefault(data.pod_id, 0)
            held = state.held.pop(data.reservation, None)
            if held is not None:
                state.held[data.pod_id] = held
        case CloudPodReady():
            pod = state.pods.get(data.pod_id)
            if pod is not None and pod.status in LIVE:
                pod.status, pod.url, pod.ready_ts = "RUNNING", data.url, event.ts
                pod.idle_since = event.ts
        case CloudCostUpdated() if data.provider == "runpod-pod":
            pod = state.pods.get(data.ref)
            if pod is not None and pod.ended_ts is None:
                _pod_accrue(state, pod, event.ts)
        case CloudCostUpdated():
            held = state.held.get(data.ref)
            price = held.price if held is not None else data.price
            cost = call_cost_u(price, data.billed_s)
            state.cost_by[SERVERLESS] = state.cost_by.get(SERVERLESS, 0) + cost
            _spend(state, data.ref, data.provider, day_of(event.ts), cost)
        case CloudPodTerminated():
            pod = state.pods.get(data.pod_id)
            if pod is not None and pod.ended_ts is None:
                _pod_accrue(state, pod, event.ts)
                pod.status, pod.ended_ts, pod.busy = "TERMINATED", event.ts, None
                state.held.pop(pod.pod_id, None)
                _forget_ended(state)
        case CloudPodClaimed():
            pod = state.pods.get(data.pod_id)
            if pod is not None and pod.status in LIVE:
                pod.busy, pod.claims = data.job_id, pod.claims + 1
                pod.claimed_ts, pod.claim_instance = event.ts, data.instance
                pod.claim_lease_s = data.lease_s
        case CloudPodReleased():
            pod = state.pods.get(data.pod_id)
            if pod is not None and pod.busy == data.job_id:
                pod.busy, pod.idle_since = None, event.ts
        case CloudCostLimitReached():
            if data.day not in state.limit_days:
                state.limit_days = [*state.limit_days[-30:], data.day]
        case CloudConfigUpdated():
            state.settings = dict(data.settings)


def _forget_ended(state: Ledger) -> None:
    ended = [p for p in state.pods.values() if p.ended_ts is not None]
    for pod in ended[: max(0, len(ended) - MAX_ENDED_PODS)]:
        del state.pods[pod.pod_id]


def _job(state: Ledger, event: Event, data: Any) -> None:
    job = event.key
    match data:
        case JobLeaseRenewed():
            until = max(state.leases.get(data.instance, 0.0), event.ts + data.ttl_s)
            state.leases[data.instance] = until
            if len(state.leases) > MAX_LEASES:
                del state.leases[min(state.leases, key=lambda i: (state.leases[i], i))]
        case JobSubmitted() | JobRetried():
            if len(state.waiting) < MAX_WAITING:
                state.waiting[job] = None
        case JobStarted():
            state.waiting.pop(job, None)
            pod = state.pods.get(data.provider or "") if data.target == POD_TARGET else None
            if pod is not None:  # busy is the claim's: a late job.started must not reset it
                state.on_pod[job] = pod.pod_id
        case JobSucceeded() | JobFailed() | JobCancelled():
            state.waiting.pop(job, None)
            state.jobs_ended += 1
            pod = state.pods.get(state.on_pod.pop(job, ""))
            if pod is not None:
                pod.jobs += 1
                state.jobs_processed += 1
                if pod.busy == job:  # ended before its release (a takeover, a crash)
                    pod.busy, pod.idle_since = None, event.ts
            elif isinstance(data, JobSucceeded) and data.provider == "runpod":
                state.jobs_processed += 1  # a serverless call


def apply(state: Ledger, event: Event) -> Ledger:
    """Fold one event into ``state`` (in place) and return it."""
    data = event.payload
    if event.type.startswith("cloud."):
        if data.n and data.n <= state.n:
            return state  # the service applied it when it wrote it
        state.n = max(state.n, data.n)
        _cloud(state, event, data)
    elif event.type.startswith("job."):
        _job(state, event, data)
    elif isinstance(data, FlagsChanged) and ENABLE_COMPUTE in data.flags:
        state.compute = data.flags[ENABLE_COMPUTE]
    return state


class LedgerProjection:
    """The ledger as a runtime projection (``gpuroute replay --projection cloud``)."""

    name = "cloud"
    type_prefix: str | None = None
    version = 3
    patterns = ("cloud.>", "job.>", "flags.changed")

    def initial(self) -> Ledger:
        return Ledger()

    def apply(self, state: Ledger, event: Event) -> Ledger:
        if event.type.startswith(("cloud.", "job.", "flags.")):
            return apply(state, event)
        return state

    def to_builtins(self, state: Ledger) -> Any:
        return msgspec.to_builtins(state)

    def from_builtins(self, data: Any) -> Ledger:
        return msgspec.convert(data, Ledger)
