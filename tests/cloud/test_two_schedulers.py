"""Two scheduler instances against one cloud service and a low cap (issue 14): pods are
claimed through the cloud service's one writer, so no pod ever runs two jobs at once,
and reserved + spent money never pass the cap -- both checked from the stored events."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from schemas import Event
from schemas.cloud import RESERVE, ReserveAnswer, ReserveRequest, SpawnRequest
from schemas.flags import ENABLE_COMPUTE, FlagsChanged
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import cap_violations, cloud_folded, read_through, running_cloud
from tests.scheduler.support import Client, running_scheduler
from tests.support import EventWatch

JOBS = 24
CAP = 0.035
"""Two spawns hold 2 x $1/h x 60 s = $0.0333: the pods fit, little else does."""


def overlaps(events: list[Event]) -> list[str]:
    """Every job.started on a pod while another job's attempt still ran there."""
    on: dict[str, str] = {}
    running: dict[str, str] = {}
    bad = []
    for e in events:
        data = e.payload
        if e.type == "job.started":
            pod = data.provider if data.target == "cloud_pod" else None
            previous = running.pop(e.key, None)
            if previous is not None:
                on.pop(previous, None)
            if pod is not None:
                if pod in on:
                    bad.append(f"{e.key} started on {pod} while {on[pod]} ran there")
                on[pod], running[e.key] = e.key, pod
        elif e.type in ("job.succeeded", "job.failed", "job.cancelled", "job.retried"):
            pod = running.pop(e.key, None)
            if pod is not None:
                on.pop(pod, None)
    return bad


async def test_two_schedulers_never_share_a_pod_and_the_cap_holds(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    await bus.emit(FlagsChanged(flags={ENABLE_COMPUTE: True}), key="flags")
    pods = msgspec.structs.replace(config.cloud.pods, dry_run=True, dry_boot_s=0.0)
    async with (
        running_advisor(config),
        running_cloud(config, max_pods=2, daily_cost_limit=CAP,
                      serverless_price_per_s=0.0001, serverless_max_s=10.0,
                      pods=pods) as cloud,
        running_scheduler(config, max_running=1) as one,
        running_scheduler(config, max_running=1) as two,
    ):  # fmt: skip
        await stored.folded(cloud.follower, "flags.changed", timeout=5)
        assert cloud.state.compute
        client = Client(bus, one.follower, two.follower)
        payload = {"duration_s": 0.02, "steps": 1}
        for _ in range(2):
            await cloud.spawn_pod(SpawnRequest())
        await cloud.check()  # dry-run pods are RUNNING at once: ready
        await cloud_folded(stored, cloud, one.cloud.follower, two.cloud.follower)
        assert len(one.cloud.follower.state.pods) == 2
        assert len(two.cloud.follower.state.pods) == 2
        accepted = await asyncio.gather(*(client.submit(payload=payload) for _ in range(JOBS)))
        views = [await client.ended(a.job_id, timeout=30) for a in accepted]
        unfinished = [(v.job_id, v.state, v.history) for v in views if v.state != "succeeded"]
        assert not unfinished, unfinished

        async def reserve(i: int) -> ReserveAnswer:  # serverless calls against what is left
            return await bus.call(RESERVE, ReserveRequest(ref=f"call-{i}"), ReserveAnswer, 10)

        answers = await asyncio.gather(*(reserve(i) for i in range(50)))
        assert 0 < sum(a.ok for a in answers) < 50
        n = cloud.state.n

    events = await read_through(stored, bus, n, ["cloud.>", "job.>"])
    assert cap_violations(events, CAP) == []
    assert overlaps(events) == []
    claims = [e.payload for e in events if e.type == "cloud.pod.claimed"]
    assert len({c.pod_id for c in claims}) == 2  # both pods used
    owners = {e.payload.owner for e in events if e.type == "job.started"}
    assert owners == {one.instance, two.instance}
