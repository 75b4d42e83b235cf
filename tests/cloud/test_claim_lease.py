"""A scheduler that dies holding a pod claim: the claim's lease expires and the cloud
service returns the pod to idle (issue 14), so the pod is not busy until its job ends."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.cloud import CLAIM, ClaimAnswer, ClaimRequest, SpawnRequest
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_advisor
from tests.cloud.cloud_support import cloud_folded, running_cloud
from tests.scheduler.support import Client, Quick, running_scheduler
from tests.support import EventWatch, poll

HOLD = {"hold": True}


async def test_a_dead_schedulers_pod_claim_expires_and_the_pod_is_idle_again(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    pods = msgspec.structs.replace(config.cloud.pods, dry_run=True, dry_boot_s=0.0)
    held = Quick()
    async with (
        running_advisor(config),
        running_cloud(config, max_pods=1, pods=pods) as cloud,
    ):  # fmt: skip
        pod = (await cloud.spawn_pod(SpawnRequest())).pod.id
        await cloud.check()  # dry-run pod RUNNING at once: ready
        async with running_scheduler(config, held, lease_s=1.0, max_running=1) as dying:
            await cloud_folded(stored, cloud, dying.cloud.follower)
            assert len(dying.cloud.follower.state.pods) == 1
            client = Client(bus)
            await client.submit(payload=HOLD)  # the local slot
            on_pod = await client.submit(payload=HOLD)
            claimed = await stored.first("cloud.pod.claimed")
            assert claimed.payload.job_id == on_pod.job_id and claimed.payload.lease_s == 1.0
            await poll(lambda: len(held.runs) == 2, timeout=5)  # the executor's list: no event
            await stored.first("job.lease.renewed")
            await dying.bus.nc.close()  # dies mid-job: no release, no lease renewal
        assert cloud.state.pods[pod].busy == on_pod.job_id

        async def released() -> bool:
            await cloud.check()  # what the check loop does every check_interval_s
            return cloud.state.pods[pod].busy is None

        # the lease expires on the clock, seen only by a check: each poll runs one
        await poll(released, timeout=10, interval=0.25)
        event = await stored.first("cloud.pod.released")
        assert event.payload.job_id == on_pod.job_id
        assert "claim lease expired" in event.payload.reason
        assert dying.instance in event.payload.reason
        again = await bus.call(CLAIM, ClaimRequest(job_id="next"), ClaimAnswer, 5)
        assert again.ok and again.pod_id == pod  # idle: claimed by the next attempt
