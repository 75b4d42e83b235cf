"""The gate: which samples are published (deadbands per reading, keep-alive),
with an injected clock (monotonic seconds passed in) and built samples."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from schemas.telemetry import GpuDevice, TelemetrySample
from schemas.telemetry_settings import Deadbands
from services.runtime.clock import ManualClock
from services.telemetry.deadband import Gate, moved
from tests.advisor.factories import gpu, sample

BANDS = Deadbands(vram_mb=256, gpu_util_pct=20, temperature_c=5, ram_mb=512, cpu_pct=25)
BASE = sample(gpu(0))


def with_gpu(s: TelemetrySample, **fields: Any) -> TelemetrySample:
    return msgspec.structs.replace(s, gpus=(msgspec.structs.replace(s.gpus[0], **fields),))


def with_host(s: TelemetrySample, **fields: Any) -> TelemetrySample:
    return msgspec.structs.replace(s, host=msgspec.structs.replace(s.host, **fields))


@pytest.mark.parametrize(
    ("inside", "outside", "says"),
    [
        (
            with_gpu(BASE, memory_used_mib=4096 + 256),
            with_gpu(BASE, memory_used_mib=4096 + 257),
            "GPU 0 VRAM used: 4096 -> 4353 MiB, past the deadband of 256",
        ),
        (
            with_gpu(BASE, memory_free_mib=20480 - 256),
            with_gpu(BASE, memory_free_mib=20480 - 257),
            "GPU 0 VRAM free: 20480 -> 20223 MiB",
        ),
        (
            with_gpu(BASE, utilization_gpu_pct=23),
            with_gpu(BASE, utilization_gpu_pct=24),
            "GPU 0 utilisation: 3 -> 24 %",
        ),
        (
            with_gpu(BASE, temperature_c=46),
            with_gpu(BASE, temperature_c=47),
            "GPU 0 temperature: 41 -> 47 C",
        ),
        (
            with_host(BASE, ram_available_mib=48 * 1024 - 512),
            with_host(BASE, ram_available_mib=48 * 1024 - 513),
            "RAM available: 49152 -> 48639 MiB",
        ),
        (
            with_host(BASE, cpu_percent=37.5),
            with_host(BASE, cpu_percent=37.6),
            "CPU: 12.5 -> 37.6 %",
        ),
    ],
)
def test_each_reading_has_its_deadband(
    inside: TelemetrySample, outside: TelemetrySample, says: str
) -> None:
    assert moved(BASE, inside, BANDS) is None
    change = moved(BASE, outside, BANDS)
    assert change is not None and change.startswith(says)


def test_readings_outside_any_band_never_publish() -> None:
    """Power and memory-controller utilisation jitter on an idle GPU: not banded."""
    jitter = with_gpu(BASE, power_draw_w=250.0, utilization_memory_pct=90)
    assert moved(BASE, jitter, BANDS) is None


@pytest.mark.parametrize(
    ("new", "says"),
    [
        (with_gpu(BASE, temperature_c=None), "GPU 0 temperature: 41 C -> unknown"),
        (sample(gpu(0), gpu(1)), "GPUs: 1 -> 2"),
        (sample(), "reason changed: None -> 'NVML unavailable"),
        (with_gpu(BASE, uuid="GPU-other"), "GPU 0 is now NVIDIA GeForce RTX 4090 (GPU-other"),
        (with_gpu(BASE, errors={"power_draw": "Not Supported"}), "GPU 0 errors: [] ->"),
        (with_host(BASE, cpu_count=8), "host changed: 16 -> 8 CPUs"),
        (msgspec.structs.replace(BASE, driver_version="560.1"), "driver changed"),
    ],
)
def test_what_a_decision_would_see_differently_always_publishes(
    new: TelemetrySample, says: str
) -> None:
    wide = Deadbands(vram_mb=1e9, gpu_util_pct=100, temperature_c=1e9, ram_mb=1e9, cpu_pct=100)
    change = moved(BASE, new, wide)
    assert change is not None and change.startswith(says), change


def test_zero_band_publishes_any_change() -> None:
    zero = Deadbands(vram_mb=0, gpu_util_pct=0, temperature_c=0, ram_mb=0, cpu_pct=0)
    assert moved(BASE, with_gpu(BASE, memory_used_mib=4097), zero) is not None
    assert moved(BASE, BASE, zero) is None


def test_first_sample_then_moves_and_keepalives() -> None:
    clock = ManualClock()
    gate = Gate(BANDS, keepalive_s=300)
    published: list[tuple[float, str]] = []

    def tick(s: TelemetrySample) -> None:
        now = clock.monotonic()
        why = gate.trigger(s, now)
        if why is not None:
            gate.published(s, now)
            published.append((now, why))
        clock.advance(10)

    for _ in range(60):  # ten idle minutes at one reading per 10 s
        tick(BASE)
    tick(with_gpu(BASE, memory_used_mib=12_000))  # a job loads a model
    for _ in range(5):
        tick(with_gpu(BASE, memory_used_mib=12_000))
    assert [(t, why.split(":")[0]) for t, why in published] == [
        (0, "first sample"),
        (300, "keep-alive"),
        (600, "GPU 0 VRAM used"),
    ]


def test_drift_is_measured_from_the_last_published_sample() -> None:
    gate = Gate(BANDS, keepalive_s=3600)
    gate.published(BASE, 0)
    used = 4096
    steps = 0
    while gate.trigger(with_gpu(BASE, memory_used_mib=used), 0) is None:
        used += 50  # each step inside the band, the total not
        steps += 1
    assert (steps, used - 4096) == (6, 300)


def test_a_failed_publish_is_tried_again_with_the_next_sample() -> None:
    gate = Gate(BANDS, keepalive_s=3600)
    assert gate.trigger(BASE, 0) == "first sample"  # not marked published: the send failed
    assert gate.trigger(BASE, 10) == "first sample"
    gate.published(BASE, 10)
    busy = with_gpu(BASE, utilization_gpu_pct=99)
    assert gate.trigger(busy, 20) is not None
    assert gate.trigger(busy, 30) is not None  # still differs from what was published
    assert gate.trigger(BASE, 30) is None


def test_settings_are_strict_and_bounded() -> None:
    from services.runtime.config import Config

    toml = b'[telemetry]\nnode = "gpu-box-1"\nkeepalive_s = 600\n'
    toml += b"[telemetry.deadband]\nvram_mb = 64\n"
    config = msgspec.toml.decode(toml, type=Config)
    assert config.telemetry.node_id() == "gpu-box-1" and config.telemetry.keepalive_s == 600
    assert config.telemetry.deadband.vram_mb == 64 and config.telemetry.deadband.cpu_pct == 25
    for bad, where in [
        (b"[telemetry]\ninterval_s = 0\n", "$.telemetry.interval_s"),
        (b"[telemetry]\nkeepalive_s = inf\n", "$.telemetry.keepalive_s"),
        (b'[telemetry]\nnode = "a b"\n', "$.telemetry.node"),
        (b"[telemetry.deadband]\nvram_mb = -1\n", "$.telemetry.deadband.vram_mb"),
        (b"[telemetry.deadband]\nvram = 1\n", "vram"),
    ]:
        with pytest.raises(msgspec.ValidationError, match=where.replace("$", r"\$")):
            msgspec.toml.decode(bad, type=Config)


def test_an_odd_host_name_still_gives_a_node_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from schemas.telemetry import NodeId
    from schemas.telemetry_settings import TelemetrySettings

    cases = [("studio box #2", "studio-box--2"), ("", "localhost"), ("x" * 300, "x" * 128)]
    for host, node in cases:
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        assert TelemetrySettings().node_id() == node
        msgspec.convert(node, NodeId)  # valid


def test_gpu_device_order_is_compared_by_position() -> None:
    a = sample(gpu(0), gpu(1, free_mib=1024))
    b = sample(gpu(0), GpuDevice(index=1, name="NVIDIA GeForce RTX 4090"))
    change = moved(a, b, BANDS)
    assert change is not None and change.startswith("GPU 1 is now")
