"""The cap test as issue 14 words it: 200 job submits fired at once through the
scheduler, each needing money (one-off jobs routed to RunPod serverless through the
adapters' dry-run provider, explicit ``remote`` jobs, and a pod), against a low cap.
Folded from the stored events in order, spent + reserved never pass the cap; the cap
is reported once; jobs the cap refuses end with code ``cost_cap`` or fall back to
local; once the scheduler knows the day's cap was reached, routing stays local."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec

from schemas.cloud import SpawnRequest
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.cloud import capped
from services.scheduler.executors import build_executors
from services.scheduler.executors.base import Executor, Outcome, Progress, Run
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import cap_violations, cloud_folded, read_through, running_cloud
from tests.cloud.test_routing import running_adapters
from tests.scheduler.support import Client, running_scheduler
from tests.support import EventWatch, poll

CAP = 0.03
"""The pod's spawn holds $1/h x 60 s = $0.016667; $0.013333 is left: 13 calls."""
CALLS = 13
ONE_OFF = {"duration_s": 0.0, "steps": 1}
REMOTE = {"executor": "remote", "payload": {"provider": "runpod", "input": {"p": 1}}}
BURST, EXPLICIT, LATER = 200, 20, 10
CLOUD = ("serverless", "cloud_pod")


class Gated(Executor):
    """The synthetic executor, but a run with ``hold`` in its payload waits for
    ``gate`` first; ``waiting`` counts the runs held now."""

    name = "synthetic"

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = 0

    async def run(self, run: Run, progress: Progress) -> Outcome:
        payload = run.payload
        if self.held(run):
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
            if isinstance(payload, dict):
                payload = {k: v for k, v in payload.items() if k != "hold"}
        return await self.inner.run(dataclasses.replace(run, payload=payload), progress)

    def held(self, run: Run) -> bool:
        return isinstance(run.payload, dict) and bool(run.payload.get("hold"))


class GatedRemote(Gated):
    """The remote executor holding every call the cap let through, so none settles
    (and frees money) until the test says."""

    name = "remote"

    def held(self, run: Run) -> bool:
        return True


async def test_200_concurrent_submits_never_pass_the_cap(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    runpod = msgspec.structs.replace(config.adapters.runpod, dry_run=True)
    config.adapters = msgspec.structs.replace(config.adapters, runpod=runpod)
    config.cloud = msgspec.structs.replace(config.cloud, autoscale_threshold=0)  # both read it
    await bus.emit(FlagsChanged(flags={ENABLE_COMPUTE: True}), key="flags")
    real = build_executors(config.scheduler, config.data_path, bus)
    local, remote = Gated(real["synthetic"]), GatedRemote(real["remote"])
    pods = msgspec.structs.replace(config.cloud.pods, dry_run=True, dry_boot_s=0.0)
    async with (
        running_adapters(config), running_advisor(config),
        running_cloud(config, daily_cost_limit=CAP, max_pods=1, pods=pods,
                      prefer_serverless=True, serverless_price_per_s=0.0001,
                      serverless_max_s=10.0) as cloud,  # $0.001 a call
        running_scheduler(config, executors=capped({"synthetic": local, "remote": remote},
                                                   bus), max_running=1) as sched,
    ):  # fmt: skip
        await stored.folded(sched.cloud.follower, "flags.changed", timeout=5)
        assert sched.cloud.follower.state.compute
        await cloud.spawn_pod(SpawnRequest())
        await cloud.check()  # the dry-run pod is RUNNING at once: ready
        await cloud_folded(stored, cloud, sched.cloud.follower)
        assert len(sched.cloud.follower.state.pods) == 1
        client = Client(bus, sched.follower)
        await client.submit(payload={"hold": True})  # the one local slot stays busy
        await poll(lambda: local.waiting == 1, timeout=5)  # the executor's own count: no event

        bodies = [REMOTE] * EXPLICIT + [{"payload": ONE_OFF}] * (BURST - EXPLICIT)
        accepted = await asyncio.gather(*(client.submit(**b) for b in bodies))
        await poll(lambda: remote.waiting == CALLS, timeout=10)  # as local.waiting
        await stored.folded(sched.cloud.follower, "cloud.cost_limit_reached", timeout=5)
        assert sched.cloud.follower.state.limit_days != []
        later = [await client.submit(payload=ONE_OFF) for _ in range(LATER)]
        # the scheduler's own count of attempts waiting for a slot: no event
        await poll(lambda: sched.cloud.waiting >= LATER, timeout=5)
        remote.gate.set()
        local.gate.set()
        views = await asyncio.gather(*(client.ended(a.job_id, timeout=30)
                                       for a in [*accepted, *later]))  # fmt: skip
        await cloud.check()  # past the cap: the pod is terminated
        n = cloud.state.n

    events = await read_through(stored, bus, n, ["cloud.>", "job.>"])
    assert cap_violations(events, CAP) == []
    [limit] = [e for e in events if e.type == "cloud.cost_limit_reached"]
    assert limit.payload.cap_usd == CAP and limit.payload.reason.startswith("cost_cap:")
    reserved = [e.payload for e in events if e.type == "cloud.cost.reserved"]
    assert [r.kind for r in reserved] == ["pod"] + ["serverless"] * CALLS

    ends = {v.job_id: v for v in views}
    for a in accepted[:EXPLICIT]:  # every explicit remote job: refused by the cap
        failed = [e.payload for e in events if e.key == a.job_id and e.type == "job.failed"]
        assert [f.code for f in failed] == ["cost_cap"], failed
        assert "cost_cap:" in failed[0].error
    one_offs = [a.job_id for a in accepted[EXPLICIT:]]
    assert all(ends[j].state == "succeeded" for j in one_offs)
    done = [e.payload for e in events if e.type == "job.succeeded"]
    assert sum(d.provider == "runpod" for d in done) == CALLS  # the calls the cap let through
    on_pod = {e.key for e in events if e.type == "job.started" and e.payload.target == "cloud_pod"}
    assert on_pod  # the pod ran jobs until the cap (then claims are refused)
    moved = [e for e in events if e.type == "job.rerouted"]
    assert all("cost_cap:" in e.payload.reason for e in moved)
    assert len(moved) == BURST - EXPLICIT - CALLS - len(on_pod)  # the rest: local
    for a in later:  # the scheduler knew: local at once, no cloud attempt, no reroute
        mine = [e for e in events if e.key == a.job_id]
        assert ends[a.job_id].state == "succeeded"
        assert all(e.payload.target not in CLOUD for e in mine if e.type == "job.started")
        assert not any(e.type == "job.rerouted" for e in mine)
    [gone] = [e.payload for e in events if e.type == "cloud.pod.terminated"]
    assert gone.code == "cost_cap"
