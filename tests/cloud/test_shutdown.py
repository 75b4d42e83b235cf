"""Stopping pods (issue 14): a clean stop of the cloud service terminates the pods
this instance spawned when ``terminate_on_shutdown`` is set, and only those; with
it off they are left running; ``POST /api/cloud/shutdown-all`` terminates every live
pod, whoever spawned it. Checked at the RunPod REST v2 stand-in (what the provider
holds) and in the stored events (``cloud.pod.terminated`` with its code)."""

from __future__ import annotations

import random
from typing import Any

from schemas.cloud import PodsSettings, SpawnRequest
from services.cloud.runpod_v2 import RunPodV2Client
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.http import HttpOptions
from services.runtime.secrets import Secret
from tests.adapters.conftest import SleepRecorder
from tests.advisor.service_support import running_gateway
from tests.cloud.cloud_support import read_stored, running_cloud
from tests.cloud.conftest import API_KEY
from tests.cloud.runpod_v2_standin import RunPodV2Standin
from tests.support import EventWatch


def client(settings: PodsSettings) -> RunPodV2Client:
    """A live client at the stand-in (each service instance closes its own)."""
    options = HttpOptions(rng=random.Random(7), sleep=SleepRecorder())
    return RunPodV2Client(settings, api_key=Secret(API_KEY), options=options)


async def test_shutdown_terminates_this_instances_pods_and_shutdown_all_every_pod(
    config: Config,
    store: Any,
    bus: Bus,
    stored: EventWatch,
    runpod_v2: RunPodV2Standin,
    pods_settings: PodsSettings,
) -> None:
    async with running_cloud(config, client=client(pods_settings), max_pods=3,
                             terminate_on_shutdown=False) as first:  # fmt: skip
        kept = (await first.spawn_pod(SpawnRequest())).pod.id
    assert runpod_v2.pods[kept].status != "TERMINATED"  # left running, as configured

    async with running_cloud(config, client=client(pods_settings), max_pods=3,
                             terminate_on_shutdown=True) as second:  # fmt: skip
        mine = (await second.spawn_pod(SpawnRequest())).pod.id
        assert {p.pod_id for p in second.state.live_pods()} == {kept, mine}
    assert runpod_v2.pods[mine].status == "TERMINATED"
    assert runpod_v2.pods[kept].status != "TERMINATED"  # another instance's pod: not ours

    async with (
        running_cloud(config, client=client(pods_settings), max_pods=3) as third,
        running_gateway(config) as http,
    ):
        assert [p.pod_id for p in third.state.live_pods()] == [kept]
        status, body = await http.post("/api/cloud/shutdown-all")
        assert status == 200 and body["terminated"] == [kept], body
        assert third.state.live_pods() == []
    assert runpod_v2.pods[kept].status == "TERMINATED"
    assert runpod_v2.count("DELETE", "/v2/pods") + runpod_v2.count("POST", "/v2/pods/") == 2

    await stored.count(2, "cloud.pod.terminated", timeout=5)  # committed after JetStream acks
    ended = [e.payload for e in await read_stored(bus, ["cloud.pod.terminated"])]
    assert [(t.pod_id, t.code) for t in ended] == [(mine, "shutdown"), (kept, "shutdown_all")]
    assert all(t.billed_s >= 0 and t.cost_usd >= 0 and t.dry_run is False for t in ended)
    assert "cloud service stopped" in ended[0].reason
