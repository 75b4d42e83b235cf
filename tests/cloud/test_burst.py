"""Done-when of issue 14: a burst of 50 synthetic jobs on a busy local queue (one
local slot) spawns pods up to max_pods at the RunPod v2 stand-in, runs jobs on
them (spread: each pod claimed at least half its fair share), shuts them down
after idle_timeout, and GET /api/cloud/cost adds up to the pods' own costs
(cost/hour x billed seconds of each pod's own events)."""

from __future__ import annotations

import asyncio
import time

import msgspec

from schemas.cloud import COST, CloudCost, NoBody
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from services.cloud.ledger import pod_cost_u, usd
from services.cloud.runpod_v2 import RunPodV2Client
from services.runtime.bus import Bus
from services.runtime.clock import ManualClock
from services.runtime.config import Config
from services.scheduler.executors.synthetic import SyntheticExecutor
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import cloud_folded, folded_all, read_stored, running_cloud
from tests.cloud.runpod_v2_standin import RunPodV2Standin
from tests.scheduler.support import Client, running_scheduler
from tests.support import EventWatch

JOBS = 50


async def test_burst_spawns_runs_and_idles_out(
    config: Config, store: object, bus: Bus, stored: EventWatch, runpod_v2: RunPodV2Standin,
    live_pods: RunPodV2Client, pod_clock: ManualClock,
) -> None:  # fmt: skip
    runpod_v2.boot_s = 10.0  # booting on the stand-in's clock
    clock = ManualClock(time.time())  # job events carry the scheduler's real clock
    await bus.emit(FlagsChanged(flags={ENABLE_COMPUTE: True}), key="flags")
    synthetic = SyntheticExecutor(config.scheduler.synthetic)
    async with (
        running_advisor(config),
        running_scheduler(config, executors={"synthetic": synthetic}, max_running=1) as sched,
        running_cloud(config, clock=clock, client=live_pods, max_pods=3,
                      autoscale_threshold=2, idle_timeout_s=30.0) as cloud,
    ):  # fmt: skip
        await stored.folded(cloud.follower, "flags.changed", timeout=5)
        assert cloud.state.compute
        client = Client(bus, sched.follower)
        payload = {"duration_s": 0.05, "steps": 1}
        accepted = await asyncio.gather(*(client.submit(payload=payload) for _ in range(JOBS)))
        ids = {a.job_id for a in accepted}
        mine = lambda e: e.key in ids  # noqa: E731
        await folded_all(stored, cloud.follower, JOBS, "job.submitted", mine)
        assert len(cloud.state.waiting) > 2
        await cloud.check()  # queue over the threshold: spawn up to max_pods
        assert len(cloud.state.live_pods()) == 3
        pod_clock.advance(11)
        clock.advance(11)
        await cloud.check()  # RUNNING with their port: ready
        await cloud_folded(stored, cloud, sched.cloud.follower)
        assert len(sched.cloud.follower.state.pods) == 3
        views = [await client.ended(a.job_id, timeout=30) for a in accepted]
        assert all(v.state == "succeeded" for v in views)
        await folded_all(stored, cloud.follower, JOBS, "job.succeeded", mine)
        assert cloud.state.jobs_processed > 0
        claims = sorted(p.claims for p in cloud.state.pods.values())
        assert min(claims) >= sum(claims) // 6, claims  # spread (the least used is claimed)
        clock.advance(31)
        pod_clock.advance(31)
        await cloud.check()  # idle past idle_timeout_s: terminated
        assert cloud.state.live_pods() == []
        cost = await bus.call(COST, NoBody(), CloudCost, 10)

    events = await read_stored(bus, ["cloud.pod.>"])
    ended = [e.payload for e in events if e.type == "cloud.pod.terminated"]
    assert sorted(e.code for e in ended) == ["idle"] * 3
    spawned = {e.payload.pod_id: e for e in events if e.type == "cloud.pod.spawned"}
    own = 0
    for end in ended:  # each pod's cost from its own events
        start = spawned[end.pod_id]
        own += pod_cost_u(start.payload.cost_per_hour, end.billed_s)
        assert cost.costByPod[end.pod_id] == end.cost_usd
    assert cost.totalCost == usd(own) == round(sum(cost.costByPod.values()), 6)
    assert cost.totalJobsProcessed >= 1
    assert msgspec.to_builtins(cost)["dry_run"] is False
