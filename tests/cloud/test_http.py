"""Every /api/cloud/* route through the real gateway in front of the cloud service
(dry-run pods): the curl lines of docs/cloud.md, their errors, and the guard."""

from __future__ import annotations

from typing import Any

from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_gateway
from tests.cloud.cloud_support import read_stored, running_cloud


async def test_every_cloud_route_over_http(config: Config, store: Any, bus: Bus) -> None:
    async with running_cloud(config, max_pods=2) as cloud, running_gateway(config) as http:
        status, body = await http.get("/api/cloud/status")
        assert status == 200, body
        assert body["available"] is True and body["activePods"] == 0
        assert body["dry_run"] is True and "dry_run setting is on" in body["reason"]
        assert body["config"]["max_pods"] == 2

        status, body = await http.post("/api/cloud/spawn", {"gpuType": "NVIDIA A40"})
        assert status == 200, body
        pod = body["pod"]
        assert body["dry_run"] is True and pod["dry_run"] is True
        assert pod["gpuType"] == "NVIDIA A40" and pod["id"].startswith("dry-")
        status, body = await http.post("/api/cloud/spawn", {"gpuType": ""})
        assert status == 400 and "gpuType" in body["error"], body

        status, body = await http.get("/api/cloud/pods")
        assert status == 200 and [p["id"] for p in body["pods"]] == [pod["id"]], body
        status, body = await http.get("/api/cloud/cost")
        assert status == 200, body
        assert body["activePods"] == 1 and body["dailyCap"] == config.cloud.daily_cost_limit
        assert body["todayReserved"] > 0 and body["dry_run"] is True
        assert body["costByPod"] == {pod["id"]: 0.0, "serverless": 0.0}, body  # always named

        status, body = await http.post("/api/cloud/terminate/no-such-pod")
        assert status == 404 and "no-such-pod" in body["error"], body

        status, body = await http.post("/api/cloud/shutdown-all")
        assert status == 200 and body["terminated"] == [pod["id"]] and body["dry_run"], body
        status, body = await http.post(f"/api/cloud/terminate/{pod['id']}")
        assert status == 200 and body["status"] == "TERMINATED", body  # again: as it is
        assert cloud.state.live_pods() == []


async def test_config_put_validates_and_a_foreign_origin_is_refused(
    config: Config, store: Any, bus: Bus
) -> None:
    async with running_cloud(config) as cloud, running_gateway(config) as http:
        before = cloud.settings
        status, body = await http.put("/api/cloud/config", {"max_pods": -1, "idle_timeout_s": 9})
        assert status == 400 and "max_pods" in body["error"], body
        status, body = await http.put("/api/cloud/config", {"colour": 1})
        assert status == 400 and "colour" in body["error"], body
        assert cloud.settings == before  # nothing changed, not even the valid key

        status, body = await http.put("/api/cloud/config", {"max_pods": 3})
        assert status == 200 and body["changed"] == ["max_pods"], body
        assert cloud.settings.max_pods == 3
        status, body = await http.get("/api/cloud/status")
        assert body["config"]["max_pods"] == 3
        shown = body["config"]

        status, body = await http.put("/api/cloud/config", {"check_interval_s": 0.01})
        assert status == 400 and "check_interval_s" in body["error"], body
        live = {**shown, "max_pods": 4, "pods": {**shown["pods"], "dry_run": False}}
        status, body = await http.put("/api/cloud/config", live)
        assert status == 400 and "pods.dry_run" in body["error"], body
        assert "restart" in body["error"] and cloud.settings.max_pods == 3
        status, body = await http.put("/api/cloud/config", shown)  # as GET showed it
        assert status == 200 and body["changed"] == [], body
        assert cloud.client.dry_run

        evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        for method, path in (("POST", "/api/cloud/spawn"), ("POST", "/api/cloud/shutdown-all"),
                             ("PUT", "/api/cloud/config")):  # fmt: skip
            status, body = await http.call(method, path, raw=b"{}", headers=evil)
            assert status == 403 and "evil.example" in body["error"], (path, body)
        assert cloud.state.pods == {}
        assert cloud.settings.max_pods == 3

    updates = await read_stored(bus, ["cloud.config.updated"])
    assert [e.payload.changed for e in updates] == [["max_pods"]]
