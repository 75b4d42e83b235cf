"""The telemetry service on a real nats-server: node ids, the deadband deciding
what is published, a keep-alive by the bus clock, and the real no-NVML path."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas.telemetry import TelemetrySample
from services.runtime.bus import Bus
from services.runtime.clock import ManualClock
from services.runtime.config import Config
from services.telemetry.service import TelemetryService
from services.telemetry.sources import NvmlTelemetry, RecordedTelemetry
from tests.advisor.factories import gpu, sample
from tests.support import EventWatch, poll, watch_events


class DialSource:
    """A source whose next reading the test sets (``reading``); counts calls."""

    def __init__(self, reading: TelemetrySample) -> None:
        self.reading = reading
        self.closed = False

    def sample(self, sample_id: str, ts: float) -> TelemetrySample:
        return msgspec.structs.replace(self.reading, sample_id=sample_id, ts=ts)

    def close(self) -> None:
        self.closed = True


@contextlib.asynccontextmanager
async def sampling(
    config: Config, source: object | None, clock: ManualClock | None = None
) -> AsyncIterator[tuple[TelemetryService, EventWatch]]:
    """The service running with ``source``, and every telemetry.sampled it publishes."""
    bus = await Bus.connect(config.nats.url or "", source="telemetry", clock=clock)
    await bus.ensure_streams()
    service = TelemetryService(bus, config, source=source)  # type: ignore[arg-type]
    try:
        async with watch_events(bus, "telemetry.sampled") as seen:
            await service.start()
            yield service, seen
    finally:
        await service.stop()
        await bus.close()


async def test_publishes_with_the_node_id_only_what_moved(config: Config) -> None:
    config.telemetry.node = "gpu-box-1"
    config.telemetry.interval_s = 0.005
    config.telemetry.keepalive_s = 3600
    source = DialSource(sample(gpu(0)))
    async with sampling(config, source) as (service, seen):
        await poll(lambda: service.stats.taken >= 30)
        assert service.stats.published == 1
        source.reading = sample(gpu(0, free_mib=2048))  # a job took 18 GiB
        await seen.count(2)
        taken = service.stats.taken
        await poll(lambda: service.stats.taken >= taken + 30)  # samples: nothing published
        assert service.stats.published == 2
    assert source.closed
    first, second = events = seen.matching()
    for event in events:
        data = event.payload
        assert isinstance(data, TelemetrySample)
        assert (event.key, data.node, event.source) == ("gpu-box-1", "gpu-box-1", "telemetry")
        assert data.sample_id == event.id == event.correlation_id
    assert first.payload.trigger == "first sample"
    assert second.payload.trigger.startswith("GPU 0 VRAM used: 4096 -> 22528 MiB")


async def test_keepalive_by_the_bus_clock(config: Config) -> None:
    config.telemetry.interval_s = 0.005
    config.telemetry.keepalive_s = 300
    clock = ManualClock()
    async with sampling(config, DialSource(sample()), clock) as (service, seen):
        await poll(lambda: service.stats.taken >= 10)
        clock.advance(299)
        taken = service.stats.taken
        await poll(lambda: service.stats.taken >= taken + 10)
        assert service.stats.published == 1
        clock.advance(1)
        second = (await seen.count(2))[1]
        assert second.payload.trigger.startswith("keep-alive")
        assert second.payload.node == config.telemetry.node_id()


async def test_recorded_samples_replay_through_the_gate(config: Config) -> None:
    config.telemetry.interval_s = 0.005
    recorded = RecordedTelemetry([sample(gpu(0)), sample(gpu(0, free_mib=1024))])
    async with sampling(config, recorded) as (_, seen):
        events = await seen.count(10)  # every reading moved: each is published
    assert [e.payload.trigger.split(":")[0] for e in events[:3]] == [
        "first sample",
        "GPU 0 VRAM used",
        "GPU 0 VRAM used",
    ]
    assert {e.payload.source for e in events} == {"recorded"}


async def test_a_source_bug_is_a_fault_and_the_sampler_restarts(config: Config) -> None:
    config.telemetry.interval_s = 0.005

    class Broken(DialSource):
        calls = 0

        def sample(self, sample_id: str, ts: float) -> TelemetrySample:
            self.calls += 1
            if self.calls == 1:
                raise KeyError("a bug in a source")
            return super().sample(sample_id, ts)

    async with sampling(config, Broken(sample())) as (service, seen):
        await poll(lambda: service.faults())
        assert "task sampler died: KeyError" in service.faults()[0]
        first = await seen.first()  # restarted after its backoff
    assert first.payload.trigger == "first sample"


async def test_this_machine_without_nvml(config: Config) -> None:
    """No NVIDIA driver or GPU here: the real source says why, the node is the
    host name, the host readings are real, and nothing raises."""
    probe = NvmlTelemetry()
    gpus = probe.sample("probe", 0).gpus
    probe.close()
    if gpus:
        pytest.skip("an NVIDIA GPU is visible here")
    async with sampling(config, None) as (service, seen):
        first = await seen.first()
        assert service.faults() == []
    data = first.payload
    assert isinstance(data, TelemetrySample)
    assert data.gpus == () and data.reason is not None and data.reason.startswith("NVML")
    assert data.node == config.telemetry.node_id() == first.key
    assert data.host.ram_total_mib and data.host.cpu_count and data.source == "nvml"
