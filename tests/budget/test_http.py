"""The /api/perf routes through the real gateway, and the modder hook aliases."""

from __future__ import annotations

import pytest

from tests.advisor.service_support import running_gateway
from tests.budget.support import budgets_on, running_budget
from tests.support import EventWatch

pytestmark = pytest.mark.usefixtures("store")

REGISTER = {"job_id": "render-1024", "job_type": "render",
            "payload": {"scene": "intro", "perf": {"cpu_percent": 12, "ram_mb": 1536,
                                                   "vram_mb": 2048}}}  # fmt: skip


async def test_the_perf_routes_answer_as_docs_perf_md_says(bus, config, stored: EventWatch):
    await budgets_on(bus)
    async with running_budget(config), running_gateway(config) as http:
        status, body = await http.post("/api/perf/budgets/jobs/register", REGISTER)
        assert status == 200 and body["ok"] and body["queue_state"] == "queued", body
        status, body = await http.post("/api/perf/budgets/jobs/start", {"job_id": "render-1024"})
        assert (status, body["queue_state"]) == (200, "running")
        status, body = await http.get("/api/perf/budgets")
        assert status == 200 and body["running"] == ["render-1024"]
        status, body = await http.post("/api/perf/budgets/jobs/finish", {"job_id": "nope"})
        assert status == 404 and "'nope'" in body["error"]
        status, body = await http.post("/api/perf/budgets/apply", {"max_vram_mb": -1})
        assert status == 400 and "$.max_vram_mb" in body["error"]
        cancel = {"job_id": "render-1024", "status": "cancelled"}
        status, body = await http.post("/api/perf/budgets/jobs/finish", cancel)
        assert (status, body["code"]) == (200, "canceled")
        status, body = await http.get("/api/perf/budgets/jobs/poll?after=0")
        assert status == 200 and [t["state"] for t in body["transitions"]] == [
            "queued",
            "running",
            "finished",
        ]
        status, body = await http.post("/api/perf/budgets/assets/register",
                                       {"asset_id": "sdxl", "size_mb": 6900,
                                        "kind": "checkpoint"})  # fmt: skip
        assert status == 200 and body["asset"]["asset_id"] == "sdxl"
        status, body = await http.post("/api/perf/budgets/assets/touch", {"asset_id": "x"})
        assert status == 404
        status, body = await http.post("/api/perf/budgets/assets/evict", {"target_mb": 1})
        assert (status, body["evicted"]) == (200, ["sdxl"])
        status, body = await http.post("/api/perf/profiler/mark", {"name": "m"})
        assert status == 200
        status, body = await http.get("/api/perf/profiler/dashboard?limit=3")
        assert status == 200 and body["marks"] == 1
        status, body = await http.get("/api/perf/health")
        assert status == 200 and body["budgets"] and body["counts"]["running"] == 0
        status, body = await http.post("/api/perf/profiler/reset")
        assert status == 200
        wanted = {"job.registered", "job.started", "job.finished"}
        await stored.until(lambda: wanted <= _triggers(stored), f"budget.state {wanted}")
        status, body = await http.get("/api/modder/hooks?topic=on_perf_budget_state&limit=100")
        assert status == 200 and body["topic"] == "budget.state"
        assert wanted <= {e["event"]["data"]["trigger"] for e in body["events"]}


def _triggers(stored: EventWatch) -> set[str]:
    return {e.payload.trigger for e in stored.matching("budget.state")}


async def test_the_dashboard_route_names_the_flag_while_it_is_off(bus, config):
    async with running_budget(config) as budget, running_gateway(config) as http:
        status, body = await http.get("/api/perf/profiler/dashboard")
        assert status == 409 and "features.enable_perf_profiler_dashboard" in body["error"]
        status, body = await http.get("/api/modder/hooks?topic=on_perf_profiler_snapshot")
        assert (status, body["topic"]) == (200, "profiler.snapshot")
        await budgets_on(bus, budget=budget)
        status, body = await http.get("/api/perf/profiler/dashboard")
        assert status == 200, body


async def test_the_hooks_websocket_takes_the_alias(bus, config):
    async with running_budget(config), running_gateway(config) as http:
        await http.post("/api/perf/budgets/jobs/register", REGISTER)
        url = http.base + "/api/modder/hooks/ws?subjects=on_perf_budget_state&after=0"
        async with http.session.ws_connect(url) as ws:
            frame = await ws.receive_json(timeout=10)
    assert frame["event"]["type"] == "budget.state"
