"""GET /metrics and GET /api/ops/doctor on the real gateway service, over a real
nats-server with the store running."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any, get_args

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas import scheduler as sch
from schemas.ops_settings import OpsSettings
from services.budget.service import BudgetService
from services.gateway.service import GatewayService
from services.ops import gpu
from services.ops.doctor import Probes
from services.ops.http import OPS
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.errors import GpurouteError, ServiceCallError
from tests.advisor.service_support import running_advisor
from tests.scheduler.support import Client, running_scheduler
from tests.support import EventWatch

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
    reads = [
        s
        for s in families["gpuroute_endpoint_requests"].samples
        if s.labels.get("endpoint") == "gpuroute.store.read" and s.name.endswith("_total")
    ]
    assert reads and reads[0].value >= 1
    spend = families["gpuroute_spend_today_usd"].samples
    assert spend[0].value == 0
    queues = {s.labels["queue"]: s.value for s in families["gpuroute_budget_jobs"].samples}
    assert queues == {"queued": 0, "delayed": 0, "running": 0}


async def _scrape(gateway: GatewayService) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "/metrics") as r:
        assert r.status == 200
        return {f.name: f for f in text_string_to_metric_families(await r.text())}


def _up(families: dict[str, Any], source: str) -> float:
    up: float = next(s.value for s in families["gpuroute_source_up"].samples
                   if s.labels["source"] == source)  # fmt: skip
    return up


async def test_metrics_without_a_scheduler_leave_its_families_out_and_say_so(
    gateway: GatewayService,
) -> None:
    families = await _scrape(gateway)
    assert _up(families, "scheduler") == 0
    assert "gpuroute_jobs" not in families and "gpuroute_decisions" not in families


async def test_metrics_count_jobs_per_state_and_decisions_per_rule_and_target(
    gateway: GatewayService, bus: Bus, config: Config, stored: EventWatch
) -> None:
    """Through the real gateway, with the advisor and the scheduler running jobs:
    the counts are the scheduler's job table, as GET /api/jobs/{id} shows it."""
    async with running_advisor(config), running_scheduler(config) as scheduler:
        client = Client(bus)
        small = {"kind": "image", "width": 64, "height": 64}  # fits this node's CPU
        ended = [await client.submit(**small, payload={"text": "a"}),
                 await client.submit(**small, payload={"text": "b"}),
                 await client.submit(**small, payload={"fail": "no"})]  # fmt: skip
        held = await client.submit(**small, payload={"hold": True})
        waits = await client.submit(kind="image")  # 1024x1024: waits for a GPU, delayed
        views = [await client.ended(a.job_id) for a in ended]

        for job_id, event, state in (
            (waits.job_id, "job.delayed", "delayed"),  # advised
            (held.job_id, "job.started", "running"),
        ):
            await stored.folded(scheduler.follower, event, where=lambda e, j=job_id: e.key == j)
            views.append(await client.get(job_id))
            assert views[-1].state == state
        with pytest.raises(ServiceCallError, match="x"):  # the request type is strict
            await bus.call(sch.STATS, {"x": 1}, sch.SchedulerStats)
        families = await _scrape(gateway)
    assert _up(families, "scheduler") == 1
    jobs = {s.labels["state"]: s.value for s in families["gpuroute_jobs"].samples}
    assert jobs["succeeded"] == 2 and jobs["failed"] == 1 and jobs["running"] == 1
    assert jobs["delayed"] == 1 and jobs["queued"] == 0 and set(get_args(sch.State)) <= set(jobs)
    decided: dict[tuple[str, str], float] = {}
    for v in views:
        assert v.decision is not None
        key = (v.decision.rule, v.decision.target)
        decided[key] = decided.get(key, 0) + 1
    counted = {(s.labels["rule"], s.labels["target"]): s.value
               for s in families["gpuroute_decisions"].samples
               if s.name == "gpuroute_decisions_total"}  # fmt: skip
    assert counted == decided


async def test_doctor_route_answers_the_report(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/api/ops/doctor") as r:
            body = await r.json()
    names = {c["name"]: c for c in body["checks"]}
    assert names["nats.reachable"]["status"] == "pass"
    assert names["store.service"]["status"] == "pass"
    assert names["gpu.0"]["status"] == "pass"
    assert r.status == (200 if body["ok"] else 503)


async def _serve_alone(
    config: Config, port: int, lines: list[str], ready: asyncio.Event, stop: asyncio.Event
) -> None:
    from services.runtime.runner import run
    from services.scheduler.service import SchedulerService

    def announce(line: str) -> None:
        lines.append(line)
        if line.startswith("gpuroute: running"):
            ready.set()

    await run(config, [("scheduler", SchedulerService)], stop=stop, announce=announce,
              metrics_port=port)  # fmt: skip


async def test_serve_alone_metrics_port_has_the_services_own_figures(
    config: Config, store: object
) -> None:
    """`gpuroute serve NAME --metrics-port 0`: its endpoints, follower and faults."""
    lines: list[str] = []
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_serve_alone(config, 0, lines, ready, stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        url = next(line.removeprefix("metrics: ") for line in lines if line.startswith("metrics:"))
        bus = await Bus.connect(config.nats.url or "", source="test")
        await bus.nc.request("gpuroute.scheduler.list", b"{}", timeout=5)
        await bus.close()
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(family: str, **labels: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if labels.items() <= s.labels.items() and not s.name.endswith("_created")
        )

    assert value("gpuroute_service_up", service="scheduler") == 1
    assert value("gpuroute_service_restarts", service="scheduler") == 0
    assert value("gpuroute_service_faults", service="scheduler") == 0
    assert value("gpuroute_follower_position", service="scheduler") >= 0
    assert value("gpuroute_follower_skipped", service="scheduler") == 0
    listed = value("gpuroute_endpoint_requests", service="scheduler",
                   endpoint="gpuroute.scheduler.list")  # fmt: skip
    assert listed == 1
    assert "gpuroute_endpoint_latency_seconds" in families


async def test_metrics_port_taken_is_one_error_naming_it(config: Config, store: object) -> None:
    with socket.socket() as taken:
        taken.bind((config.http.host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GpurouteError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await _serve_alone(config, port, [], asyncio.Event(), asyncio.Event())
