"""Dry-run pods are deterministic (same seed, names and clock: same ids and statuses),
say dry_run everywhere, and pod_client() goes live only when it should, saying why not."""

from __future__ import annotations

import msgspec
import pytest

from schemas.cloud import PodInfo, PodSpec, PodsSettings
from services.cloud.pods import DryRunPods, PodNotFound, dry_run_reason, pod_client, stuck
from services.cloud.runpod_v2 import RunPodV2Client
from services.runtime.clock import ManualClock
from services.runtime.secrets import load_secrets

SETTINGS = PodsSettings(dry_boot_s=30.0, dry_cost_per_hour=0.5, dry_seed=42)


def spec(name: str) -> PodSpec:
    return PodSpec(name=name, image="img", gpu_id="NVIDIA A40", gpu_count=2)


async def run(settings: PodsSettings) -> list[PodInfo]:
    """A scripted day of pods: the answers it produced, in order."""
    clock = ManualClock()
    pods = DryRunPods(settings, clock)
    seen = [await pods.create(spec("a")), await pods.create(spec("b"))]
    for _ in range(4):
        clock.advance(10.0)
        seen += [await pods.get(info.id) for info in seen[:2]]
    seen.append(await pods.terminate(seen[0].id))
    seen.append(await pods.create(spec("a")))
    clock.advance(5.0)
    seen += await pods.list()
    return seen


async def test_same_seed_and_clock_give_the_same_ids_and_statuses() -> None:
    first, second = await run(SETTINGS), await run(SETTINGS)
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
    assert all(info.dry_run for info in first)
    ids = [info.id for info in first]
    assert len(set(ids)) == 3  # a, b, and the second pod named a
    assert all(i.startswith("dry-") and len(i) == 16 for i in ids)
    other = await run(msgspec.structs.replace(SETTINGS, dry_seed=43))
    assert {i.id for i in other}.isdisjoint(ids)


async def test_a_dry_pod_boots_on_the_clock_and_costs_its_price() -> None:
    clock = ManualClock()
    pods = DryRunPods(SETTINGS, clock)
    pod = await pods.create(spec("a"))
    statuses = []
    for _ in range(4):
        statuses.append((await pods.get(pod.id)).status)
        clock.advance(15.0)
    assert statuses == ["PROVISIONING", "STARTING", "RUNNING", "RUNNING"]
    running = await pods.get(pod.id)
    assert (running.uptime_s, running.cost_per_hour) == (30.0, 1.0)  # 0.5/h per GPU, two GPUs
    assert running.http_url(8188) == f"https://{pod.id}-8188.proxy.runpod.net"
    assert stuck(running, first_seen_running_at=0.0, now=10_000.0, limit_s=1.0) is None
    stopped = await pods.stop(pod.id)
    assert (stopped.status, stopped.cost_per_hour, stopped.ports) == ("EXITED", 0.0, [])
    ended = await pods.terminate(pod.id)
    assert (ended.status, ended.cost_per_hour) == ("TERMINATED", 0.0)
    assert (await pods.stop(pod.id)).status == "TERMINATED"
    with pytest.raises(PodNotFound, match="no dry-run pod"):
        await pods.get("dry-000000000000")


def test_stuck_only_counts_running_pods_without_ports() -> None:
    base = PodInfo(id="p1", name="n", status="STARTING", cost_per_hour=0.4, uptime_s=None,
                   ports=[], gpu_id="g", dry_run=True)  # fmt: skip
    assert stuck(base, 0.0, 1e6, 60.0) is None
    running = msgspec.structs.replace(base, status="RUNNING")
    assert stuck(running, None, 1e6, 60.0) is None  # never seen running: nothing to time
    assert stuck(running, 0.0, 60.0, 60.0) is None
    assert "RUNNING for 61 s with no ports" in (stuck(running, 0.0, 61.0, 60.0) or "")


@pytest.mark.parametrize(
    ("env", "dry", "expected"),
    [
        ({"RUNPOD_API_KEY": "rpa_k"}, False, ""),
        ({}, False, "no RunPod API key"),
        ({"RUNPOD_API_KEY": "rpa_k"}, True, "the [cloud.pods] dry_run setting is on"),
        ({}, True, "the [cloud.pods] dry_run setting is on; no RunPod API key"),
    ],
)
async def test_pod_client_goes_live_only_with_a_key_and_dry_run_off(
    env: dict[str, str], dry: bool, expected: str
) -> None:
    settings = PodsSettings(dry_run=dry)
    secrets = load_secrets(None, env)
    client = pod_client(settings, secrets, ManualClock())
    assert dry_run_reason(settings, secrets).startswith(expected)
    if expected:
        assert isinstance(client, DryRunPods)
        assert client.dry_run and expected in client.reason
    else:
        assert isinstance(client, RunPodV2Client)
        assert not client.dry_run and "rpa_k" not in repr(client)
    await client.aclose()
