"""GET /metrics and GET /api/ops/doctor on the real gateway service, over a real
nats-server with the store running."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.ops_settings import OpsSettings
from services.budget.service import BudgetService
from services.gateway.service import GatewayService
from services.ops import gpu
from services.ops.doctor import Probes
from services.ops.http import OPS
from services.runtime.bus import Bus
from services.runtime.config import Config

FAMILIES = {
    "gpuroute_events_stored", "gpuroute_events_dead_lettered", "gpuroute_store_lag_events",
    "gpuroute_endpoint_requests", "gpuroute_endpoint_latency_seconds", "gpuroute_budget_jobs",
    "gpuroute_spend_today_usd", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL",
    "gpuroute_source_up", "gpuroute_service_instances",
}  # fmt: skip


@pytest.fixture
async def gateway(config: Config, store: object) -> AsyncIterator[GatewayService]:
    cfg = msgspec.structs.replace(config, ops=OpsSettings(listen_s=0.3))
    budget_bus = await Bus.connect(config.nats.url or "", source="budget")
    budget = BudgetService(budget_bus, cfg)
    await budget.start()
    bus = await Bus.connect(config.nats.url or "", source="gateway")
    service = GatewayService(bus, cfg)
    await service.start()
    service.app[OPS].probes = Probes(gpu=lambda _: gpu.GpuProbe(
        gpus=[gpu.GpuState(index=0, name="T4", uuid="GPU-1", memory_total_mib=16000,
                           memory_used_mib=1000, utilization_pct=7, temperature_c=50)],
        driver="550"))  # fmt: skip
    yield service
    await service.stop()
    await bus.close()
    await budget.stop()
    await budget_bus.close()


async def test_metrics_parse_and_have_the_families(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http:
        await http.get(gateway.url + "/api/events")  # one store.read the endpoint stats count
        async with http.get(gateway.url + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert FAMILIES <= set(families), FAMILIES - set(families)
    fb = families["DCGM_FI_DEV_FB_USED"].samples[0]
    assert fb.value == 1000 and fb.labels == {"gpu": "0", "UUID": "GPU-1", "modelName": "T4"}
    up = {s.labels["source"]: s.value for s in families["gpuroute_source_up"].samples}
    assert up["store"] == 1 and up["consumer"] == 1
    reads = [s for s in families["gpuroute_endpoint_requests"].samples
             if s.labels.get("endpoint") == "gpuroute.store.read" and s.name.endswith("_total")]
    assert reads and reads[0].value >= 1
    spend = families["gpuroute_spend_today_usd"].samples
    assert spend[0].value == 0
    queues = {s.labels["queue"]: s.value for s in families["gpuroute_budget_jobs"].samples}
    assert queues == {"queued": 0, "delayed": 0, "running": 0}


async def test_doctor_route_answers_the_report(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/api/ops/doctor") as r:
            body = await r.json()
    names = {c["name"]: c for c in body["checks"]}
    assert names["nats.reachable"]["status"] == "pass"
    assert names["store.service"]["status"] == "pass"
    assert names["gpu.0"]["status"] == "pass"
    assert r.status == (200 if body["ok"] else 503)
