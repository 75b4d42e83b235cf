"""What the cloud routes answer, built from the ledger and a time given by the caller.

Field names are the ones existing clients read (``activePods``, ``costByPod``,
...). Money is USD rounded to the micro-dollar; times are seconds.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.cloud import (
    CloudCost,
    CloudStatus,
    ConfigAnswer,
    PodList,
    PodView,
    ShutdownAnswer,
    SpawnAnswer,
)
from schemas.cloud_settings import CloudSettings
from services.cloud.ledger import SERVERLESS, Ledger, Pod, day_of, usd


def pod_view(pod: Pod, now: float) -> PodView:
    end = pod.ended_ts if pod.ended_ts is not None else now
    idle = 0.0 if pod.busy is not None or pod.idle_since is None else end - pod.idle_since
    return PodView(
        id=pod.pod_id, status=pod.status, busy=pod.busy is not None, jobsProcessed=pod.jobs,
        costPerHour=pod.cost_per_hour, uptime=round(max(0.0, end - pod.spawned_ts), 3),
        idleTime=round(max(0.0, idle), 3), cost=usd(pod.cost_u), url=pod.url,
        gpuType=pod.gpu_type, dry_run=pod.dry_run,
    )  # fmt: skip


def _views(state: Ledger, now: float) -> list[PodView]:
    return [pod_view(p, now) for p in sorted(state.pods.values(), key=lambda p: p.spawned_ts)]


def status(
    state: Ledger, settings: CloudSettings, now: float, dry_run: bool, reason: str
) -> CloudStatus:
    live = state.live_pods()
    return CloudStatus(
        available=settings.max_pods > 0 and day_of(now) not in state.limit_days,
        activePods=len(live), busyPods=sum(1 for p in live if p.busy is not None),
        totalJobsProcessed=state.jobs_processed, totalCost=usd(state.total_u()),
        pods=_views(state, now), config=msgspec.to_builtins(settings), dry_run=dry_run,
        reason=reason, jobsEnded=state.jobs_ended,
    )  # fmt: skip


def cost(state: Ledger, settings: CloudSettings, now: float, dry_run: bool) -> CloudCost:
    today = day_of(now)
    total = state.total_u()
    jobs = state.jobs_processed
    return CloudCost(
        totalCost=usd(total), costByPod=_by_pod(state),
        activePods=len(state.live_pods()), totalJobsProcessed=jobs,
        avgCostPerJob=round(usd(total) / jobs, 6) if jobs else 0.0, today=today,
        todaySpent=usd(state.spent(today)), todayReserved=usd(state.reserved(today)),
        dailyCap=settings.daily_cost_limit,
        costByDay={k: usd(v) for k, v in sorted(state.spent_day.items())},
        costByProvider={k: usd(v) for k, v in sorted(state.spent_provider.items())},
        limitReached=today in state.limit_days, dry_run=dry_run,
    )  # fmt: skip


def _by_pod(state: Ledger) -> dict[str, float]:
    """Each pod's cost, and ``serverless`` always (0 before any call): clients read it."""
    by = {SERVERLESS: 0, **state.cost_by}
    return {k: usd(v) for k, v in sorted(by.items())}


def pod_list(state: Ledger, now: float, dry_run: bool) -> PodList:
    return PodList(pods=_views(state, now), dry_run=dry_run)


def spawned(state: Ledger, pod_id: str, now: float, dry_run: bool) -> SpawnAnswer:
    return SpawnAnswer(pod=pod_view(state.pods[pod_id], now), dry_run=dry_run)


def shutdown(ids: list[str], dry_run: bool) -> ShutdownAnswer:
    return ShutdownAnswer(terminated=ids, dry_run=dry_run)


def config_answer(raw: dict[str, Any], changed: list[str], dry_run: bool) -> ConfigAnswer:
    return ConfigAnswer(config=raw, changed=changed, dry_run=dry_run)
