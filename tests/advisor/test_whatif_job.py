"""The what-if for one job (``gpuroute.advisor.whatif``, ``POST /api/advisor/whatif``)
against a real store, advisor and gateway: the job's recorded decision is re-run
in the context it was made in (rebuilt from the log, not the advisor's state
now), with the thresholds and prices of the request; nothing is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from schemas.advisor import (
    CONFIG_SUBJECT,
    WHATIF_SUBJECT,
    AdvisedInputs,
    AdvisorConfigQuery,
    AdvisorConfigView,
    JobAdvised,
    RuleThresholds,
    WhatIfAnswer,
    WhatIfRequest,
)
from schemas.flags import FlagsChanged
from schemas.jobs import JobSpec, JobSubmitted
from services.advisor.service import AdvisorService
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError
from tests.advisor.service_support import NO_GPU, Http, advised, running_advisor, running_gateway
from tests.support import EventWatch

pytestmark = pytest.mark.usefixtures("store")

BIG = JobSpec(width=1024, height=1024)
"""No GPU, the flag off: recorded as wait_for_local_gpu; 1.05 MP is over the CPU's 0.6."""
CPU_TAKES_IT = {"cpu": {"max_megapixels": 2.0}}


class Stack:
    def __init__(self, advisor: AdvisorService, http: Http, bus: Bus, stored: EventWatch) -> None:
        self.advisor = advisor
        self.http = http
        self.bus = bus
        self.stored = stored

    async def advise(self, key: str, spec: JobSpec = BIG) -> dict[str, Any]:
        await self.bus.emit(JobSubmitted(spec=spec), key=key)
        payload = (await advised(self.stored, [key]))[key].payload
        assert isinstance(payload, JobAdvised)
        return {"target": payload.target, "rule": payload.rule, "provider": payload.provider}

    async def flag(self, on: bool) -> None:
        changed = self.bus.event(FlagsChanged(flags={"features.enable_compute": on}), key="flags")
        assert await self.advisor.follower.publish_and_wait([changed], 10)

    async def what_if(self, body: dict[str, Any]) -> tuple[int, Any]:
        return await self.http.post("/api/advisor/whatif", body)


@pytest.fixture
async def stack(config, bus, stored) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with running_advisor(config, NO_GPU) as advisor, running_gateway(config) as http:
        yield Stack(advisor, http, bus, stored)


async def test_a_recorded_decision_re_runs_in_its_own_context(stack: Stack) -> None:
    recorded = await stack.advise("job-wait")
    assert (recorded["target"], recorded["rule"]) == ("wait", "wait_for_local_gpu")
    await stack.flag(True)  # the advisor now would send it remote: the what-if must not
    head = stack.advisor.position

    status, same = await stack.what_if({"job_id": "job-wait"})
    assert status == 200, same
    assert same["changed"] is False and same["dry_run"] is True
    assert same["new"]["rule"] == same["recorded"]["rule"] == "wait_for_local_gpu"
    assert same["config_digest"] == same["recorded_config_digest"] == stack.advisor.digest

    status, moved = await stack.what_if({"job_id": "job-wait", "thresholds": CPU_TAKES_IT})
    assert status == 200, moved
    assert moved["changed"] is True
    assert (moved["new"]["target"], moved["new"]["rule"]) == ("cpu", "cpu_small_job")
    assert moved["thresholds"]["cpu"]["max_megapixels"] == 2.0
    assert moved["thresholds"]["local_gpu"] == same["thresholds"]["local_gpu"]
    assert moved["config_digest"] != moved["recorded_config_digest"]
    assert moved["cost_difference_usd"] is not None
    assert stack.advisor.position == head  # a what-if records nothing

    # over NATS, the same answer
    thresholds = msgspec.convert(CPU_TAKES_IT, RuleThresholds)
    request = WhatIfRequest(job_id="job-wait", thresholds=thresholds)
    answer = await stack.bus.call(WHATIF_SUBJECT, request, WhatIfAnswer)
    assert (answer.changed, answer.new.rule) == (True, "cpu_small_job")


async def test_a_dearer_provider_moves_a_remote_decision(stack: Stack) -> None:
    await stack.flag(True)
    recorded = await stack.advise("job-remote")
    assert recorded["rule"] == "remote_cheapest", recorded
    cheapest = recorded["provider"]
    status, body = await stack.what_if(
        {"job_id": "job-remote", "price_overrides": {cheapest: 9999}}
    )
    assert status == 200, body
    assert body["changed"] is True and body["new"]["provider_id"] != cheapest
    assert body["price_overrides"] == {cheapest: 9999}
    status, body = await stack.what_if({"job_id": "job-remote", "price_overrides": {cheapest: 0}})
    assert status == 200 and body["changed"] is False  # cheaper still: the same provider


async def test_bad_requests_name_what_is_wrong(stack: Stack) -> None:
    await stack.advise("job-bad")
    status, body = await stack.what_if({"job_id": "no-such-job"})
    assert status == 404 and "'no-such-job'" in body["error"], body
    status, body = await stack.what_if(
        {"job_id": "job-bad", "thresholds": {"local_gpu": {"headroom_gbb": 1}}}
    )
    assert status == 400 and "headroom_gbb" in body["error"], body
    status, body = await stack.what_if(
        {"job_id": "job-bad", "thresholds": {"cpu": {"max_minutes": -1}}}
    )
    assert status == 400 and "$.thresholds.cpu.max_minutes" in body["error"], body
    status, body = await stack.what_if({"job_id": "job-bad", "price_overrides": {"nope": 1}})
    assert status == 400 and "'nope'" in body["error"] and "registered then" in body["error"]
    status, body = await stack.what_if({"job_id": "job-bad", "price_overrides": {"modal": 1e9}})
    assert status == 400 and "$.price_overrides" in body["error"], body
    old = JobAdvised(target="wait", rule="wait_for_local_gpu", reason="r", inputs=AdvisedInputs())
    await stack.bus.emit(old, key="old-job")  # as events written before inputs were typed
    await advised(stack.stored, ["old-job"])
    status, body = await stack.what_if({"job_id": "old-job"})
    assert status == 409 and "without inputs" in body["error"], body
    negative = {"job_id": "job-bad", "thresholds": {"cpu": {"max_minutes": -1}}}
    with pytest.raises(ServiceCallError) as e:
        await stack.bus.call(WHATIF_SUBJECT, negative, WhatIfAnswer)
    assert e.value.code == 400 and "max_minutes" in e.value.description
    with pytest.raises(ServiceCallError) as e:
        await stack.bus.call(WHATIF_SUBJECT, WhatIfRequest(job_id="nobody"), WhatIfAnswer)
    assert e.value.code == 404 and "'nobody'" in e.value.description


async def test_the_config_route_shows_the_thresholds_in_use(stack: Stack) -> None:
    status, body = await stack.http.get("/api/advisor/config")
    assert status == 200, body
    assert body["thresholds"]["cpu"]["max_megapixels"] == 0.6
    assert body["config_digest"] == stack.advisor.digest and body["price_overrides"] == 0
    view = await stack.bus.call(CONFIG_SUBJECT, AdvisorConfigQuery(), AdvisorConfigView)
    assert view.thresholds == stack.advisor.rules.rules
