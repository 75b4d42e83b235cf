"""Builders for advisor test inputs: GPUs, telemetry samples, flags."""

from __future__ import annotations

from collections.abc import Callable

from schemas.telemetry import GpuDevice, HostStats, TelemetrySample
from services.advisor.decision import DecisionContext

GIB = 1024  # MiB

ON = {"features.enable_compute": True}


def gpu(index: int = 0, free_mib: int | None = 20 * GIB, total_mib: int = 24 * GIB) -> GpuDevice:
    used = None if free_mib is None else total_mib - free_mib
    return GpuDevice(
        index=index,
        name="NVIDIA GeForce RTX 4090",
        uuid=f"GPU-{index:08d}",
        memory_total_mib=total_mib,
        memory_used_mib=used,
        memory_free_mib=free_mib,
        utilization_gpu_pct=3,
        utilization_memory_pct=1,
        temperature_c=41,
        power_draw_w=31.5,
    )


HOST = HostStats(cpu_percent=12.5, cpu_count=16, ram_total_mib=64 * GIB, ram_available_mib=48 * GIB)


def sample(
    *gpus: GpuDevice, sample_id: str = "tel-1", reason: str | None = None
) -> TelemetrySample:
    return TelemetrySample(
        sample_id=sample_id,
        ts=1_700_000_000.0,
        gpus=gpus,
        host=HOST,
        driver_version="550.54.15" if gpus else None,
        reason=reason if reason or gpus else "NVML unavailable: NVML Shared Library Not Found",
        source="recorded",
    )


MakeContext = Callable[..., DecisionContext]
