"""The advisor deciding with samples from the telemetry services of two nodes,
on a real nats-server and store."""

from __future__ import annotations

import contextlib
from functools import partial

import msgspec
import pytest

from schemas.advisor import AdvisedInputs
from schemas.jobs import JobSpec, JobSubmitted
from schemas.telemetry_settings import TelemetrySettings
from services.advisor.service import AdvisorService
from services.advisor.state import gpu_list
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.telemetry.service import TelemetryService
from services.telemetry.sources import RecordedTelemetry
from tests.advisor.factories import gpu, sample
from tests.advisor.service_support import advised, stored_events
from tests.gateway.conftest import running
from tests.support import EventWatch


def node_config(config: Config, node: str) -> Config:
    telemetry = TelemetrySettings(node=node, interval_s=0.01, keepalive_s=3600)
    return msgspec.structs.replace(config, telemetry=telemetry)


@pytest.mark.usefixtures("store")
async def test_the_advisor_decides_with_the_sample_of_its_node(
    bus: Bus, config: Config, stored: EventWatch
) -> None:
    a, b = node_config(config, "box-a"), node_config(config, "box-b")
    sampler_a = partial(TelemetryService, source=RecordedTelemetry([sample(gpu(0))]))
    sampler_b = partial(TelemetryService, source=RecordedTelemetry([sample()]))
    async with contextlib.AsyncExitStack() as stack:
        advisor = await stack.enter_async_context(running(AdvisorService, a, "advisor"))
        assert isinstance(advisor, AdvisorService) and advisor.node == "box-a"
        await stack.enter_async_context(running(sampler_a, a, "telemetry"))
        await stored.folded(advisor.follower, "telemetry.sampled")
        assert advisor.state.telemetry is not None
        await stack.enter_async_context(running(sampler_b, b, "telemetry"))
        await stored.count(2, "telemetry.sampled")
        job = bus.event(JobSubmitted(spec=JobSpec(width=1024, height=1024)), key="job-a")
        await bus.publish(job)
        event = (await advised(stored, ["job-a"]))["job-a"]
        assert gpu_list(advisor.state).count == 1
    samples = {e.id: e for _, e in stored_events(config.events_db, "telemetry.sampled")}
    assert sorted(e.key for e in samples.values()) == ["box-a", "box-b"]
    data = event.payload
    assert data.target == "local" and "GPU 0 (NVIDIA GeForce RTX 4090)" in data.reason
    inputs = msgspec.convert(data.inputs, AdvisedInputs)
    used = samples[inputs.telemetry_sample_id]
    assert used.source == "telemetry" and used.payload.node == "box-a"
    assert inputs.state_position > 0
