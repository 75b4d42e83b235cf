"""The modder hook topics issue 14 names for the cloud events -- ``podSpawned``,
``podTerminated``, ``jobCompleted`` and ``costUpdated`` -- on
``GET /api/modder/hooks?topic=...`` and on the hooks WebSocket, through the real
gateway in front of the cloud service (dry-run pods)."""

from __future__ import annotations

from typing import Any

from schemas.cloud import SpawnRequest
from schemas.jobs import JobSucceeded
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_gateway
from tests.cloud.cloud_support import running_cloud
from tests.support import EventWatch

ALIASES = {
    "podSpawned": "cloud.pod.spawned",
    "podTerminated": "cloud.pod.terminated",
    "jobCompleted": "job.succeeded",
    "costUpdated": "cloud.cost.updated",
}


async def test_cloud_topic_aliases_over_http_and_websocket(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    async with running_cloud(config) as cloud, running_gateway(config) as http:
        pod = (await cloud.spawn_pod(SpawnRequest())).pod.id
        await cloud.check()  # charges the pod: cloud.cost.updated
        await http.post(f"/api/cloud/terminate/{pod}")
        await bus.emit(JobSucceeded(dry_run=True), key="job-1")
        for type_ in ALIASES.values():
            await stored.first(type_)

        for topic, type_ in ALIASES.items():
            status, body = await http.get(f"/api/modder/hooks?topic={topic}")
            assert status == 200 and body["topic"] == type_, body
            assert body["events"] and {e["event"]["type"] for e in body["events"]} == {type_}
        status, body = await http.get("/api/modder/hooks?topic=podSpawned")
        assert body["events"][0]["event"]["data"]["pod_id"] == pod

        url = http.base + "/api/modder/hooks/ws?subjects=" + ",".join(ALIASES) + "&after=0"
        async with http.session.ws_connect(url) as ws:
            seen = [(await ws.receive_json(timeout=10))["event"]["type"] for _ in range(4)]
        assert sorted(seen) == sorted(ALIASES.values())

        async with http.session.ws_connect(http.base + "/api/modder/hooks/ws") as ws:
            await ws.send_json({"subjects": ["podTerminated"], "after": 0})  # first frame
            frame = await ws.receive_json(timeout=10)
        assert frame["event"]["type"] == "cloud.pod.terminated"
        assert frame["event"]["data"]["pod_id"] == pod
