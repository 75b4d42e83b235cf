"""One contract, two pod clients: the live RunPod v2 client against the stand-in, and
dry-run pods. Both boot on the same injected clock, so one test reads for both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas.cloud import PodSpec, PodsSettings
from services.cloud.pods import DryRunPods, PodClient, PodNotFound
from services.cloud.runpod_v2 import RunPodV2Client
from services.runtime.clock import ManualClock
from tests.cloud.runpod_v2_standin import RunPodV2Standin

BOOT_S = 40.0
SPEC = PodSpec(name="gpuroute-w1", image="runpod/worker-comfyui:5.5.0-base",
               gpu_id="NVIDIA GeForce RTX 4090", env={"TOKEN": "s3cret"})  # fmt: skip


@pytest.fixture(params=["live", "dry"])
async def pods(
    request: pytest.FixtureRequest, runpod_v2: RunPodV2Standin, pod_clock: ManualClock,
    live_pods: RunPodV2Client, pods_settings: PodsSettings,
) -> AsyncIterator[PodClient]:  # fmt: skip
    runpod_v2.boot_s = BOOT_S
    if request.param == "live":
        yield live_pods
        return
    dry = DryRunPods(msgspec.structs.replace(pods_settings, dry_boot_s=BOOT_S), pod_clock)
    yield dry
    await dry.aclose()


async def test_a_pod_boots_to_running_with_its_port_at_the_proxy_url(
    pods: PodClient, pod_clock: ManualClock
) -> None:
    created = await pods.create(SPEC)
    assert created.status == "PROVISIONING"
    assert (created.name, created.gpu_id, created.ports) == (SPEC.name, SPEC.gpu_id, [])
    assert created.dry_run is pods.dry_run
    pod_clock.advance(BOOT_S / 2)
    assert (await pods.get(created.id)).status == "STARTING"
    pod_clock.advance(BOOT_S / 2 + 5)
    running = await pods.get(created.id)
    assert running.status == "RUNNING"
    assert running.uptime_s == pytest.approx(5.0)
    assert running.cost_per_hour > 0
    assert running.http_url(8188) == f"http://127.0.0.1:9/{created.id}/8188"
    assert [p.id for p in await pods.list()] == [created.id]


async def test_terminate_ends_billing_and_is_idempotent(pods: PodClient) -> None:
    created = await pods.create(SPEC)
    ended = await pods.terminate(created.id)
    assert (ended.id, ended.status, ended.cost_per_hour) == (created.id, "TERMINATED", 0.0)
    again = await pods.terminate(created.id)
    assert (again.status, again.cost_per_hour) == ("TERMINATED", 0.0)
    assert await pods.list() == []


async def test_an_unknown_pod_is_pod_not_found(pods: PodClient) -> None:
    with pytest.raises(PodNotFound, match="nopod123"):
        await pods.get("nopod123")
    with pytest.raises(PodNotFound):
        await pods.terminate("nopod123")
