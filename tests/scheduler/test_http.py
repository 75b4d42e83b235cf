"""The scheduler's routes through the real gateway (the README's curl line)."""

from __future__ import annotations

from typing import Any

from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.advisor.service_support import running_advisor, running_gateway
from tests.support import EventWatch

from .support import running_scheduler


async def test_submit_follow_cancel_and_artifacts_over_http(
    config: Config, store: Any, bus: Bus, stored: EventWatch
) -> None:
    async with running_advisor(config), running_scheduler(config) as sched, \
            running_gateway(config) as http:  # fmt: skip
        status, body = await http.post("/api/jobs", {
            "kind": "image", "width": 512, "height": 512, "executor": "synthetic",
            "payload": {"text": "x"}})  # fmt: skip
        assert status == 200, body
        job_id = body["job_id"]

        mine = lambda e: e.key == job_id  # noqa: E731
        await stored.folded(sched.follower, "job.succeeded", where=mine)
        status, view = await http.get(f"/api/jobs/{job_id}")
        assert status == 200 and view["state"] == "succeeded", view
        assert view["artifacts"] == ["out.txt"] and view["decision"]["rule"]
        status, art = await http.get(f"/api/jobs/{job_id}/artifacts/out.txt.json")
        assert status == 200 and art["content_type"] == "application/json"
        status, page = await http.get("/api/jobs?state=succeeded&limit=5")
        assert status == 200 and page["jobs"][0]["job_id"] == job_id
        status, err = await http.post(f"/api/jobs/{job_id}/cancel")
        assert status == 409, err
        status, err = await http.post("/api/jobs", {"executor": "synthetic", "colour": 1})
        assert status == 400 and "colour" in str(err), err
        status, err = await http.get("/api/jobs/nope")
        assert status == 404, err
