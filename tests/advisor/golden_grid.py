"""A broad, deterministic grid of advisor inputs for the golden-output test.

Specs x states x configs, built from plain integer arithmetic (no ``random``,
so the grid is the same on every Python). ``test_golden.py`` encodes every
output with msgspec.json and compares a sha256 of the concatenation with the
bytes the advisor produced before its decision path was optimised: any change
to a decision, a reason, a rounding or a field order shows up there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from schemas.advisor import CostRequest
from schemas.flags import FlagsChanged
from schemas.jobs import JobSpec, JobSpecBody
from schemas.providers import (
    GpuOffer,
    HardwareProfile,
    PriceSnapshot,
    ProviderProfile,
    ProviderRemoved,
    ProviderUpserted,
)
from schemas.telemetry import GpuDevice, HostStats, TelemetrySample
from services.advisor.config import DEFAULT_CONFIG, AdvisorConfig, parse_config
from services.advisor.registry import RegistryState, fold, load_seed, seed_payloads
from services.advisor.state import AdvisorState, apply

from .factories import HOST, gpu, sample

ON = {"features.enable_compute": True}
SNAP = PriceSnapshot(date="2026-11-01", source="https://example.test/pricing")

_DIMS: dict[str, tuple[Any, ...]] = {
    "kind": ("image", "video", "llm", "speech", "other"),
    "width": (None, 64, 512, 777, 1024, 2048, 4096, 16384),
    "height": (None, 512, 1024, 1536),
    "batch": (1, 1, 2, 4, 16),
    "frames": (1, 8, 24, 240),
    "steps": (None, 4, 20, 50),
    "model": (
        None,
        None,
        "sdxl",
        "flux-dev",
        "llama-3-8b",
        "Llama-3-70B",
        "mistral-7b-instruct",
        "whisper-large-v3",
        "qwen2.5-0.5b",
        "my-model",
    ),
    "vram_gb": (None, None, None, None, 0.5, 12.3456, 79.6, 200.0),
    "max_cost_usd": (None, None, 0.0, 0.001, 0.02, 0.05, 1.0, 100.0),
    "prefer": (
        None,
        None,
        None,
        "local",
        "cpu",
        "remote",
        "wait",
        "modal",
        "replicate",
        "lan-box",
        "hf-endpoints",
        "nope",
        "runpod-pod",
    ),
    "debug": (False, False, True),
    "tokens": (None, 1, 1000, 200_000),
    "audio_seconds": (None, 0.5, 120.0, 3600.0),
}

BENCH_SPECS: list[dict[str, Any]] = [
    {"width": 1024, "height": 1024},
    {"width": 512, "height": 512, "steps": 20},
    {"width": 1024, "height": 1024, "batch": 2, "model": "sdxl"},
    {"kind": "video", "width": 512, "height": 512, "frames": 24},
    {"kind": "llm", "model": "llama-3-8b", "tokens": 1000},
    {"kind": "speech", "model": "whisper-large-v3", "audio_seconds": 120},
    {"width": 2048, "height": 2048, "max_cost_usd": 0.05},
    {"kind": "image", "model": "flux-dev", "prefer": "modal"},
]


def _pick(i: int, k: int, values: tuple[Any, ...]) -> Any:
    h = (i * 2654435761 + k * 40503 + (i >> 3) * 97) % 2**32
    return values[(h >> 7) % len(values)]


def specs(n: int = 240) -> list[JobSpec]:
    """``n`` mixed specs, the bench's specs and some of its unique ones."""
    out = [
        JobSpec(**{name: _pick(i, k, vals) for k, (name, vals) in enumerate(_DIMS.items())})
        for i in range(n)
    ]
    out += [JobSpec(**s) for s in BENCH_SPECS]
    out += [
        JobSpec(**{**BENCH_SPECS[i % 8], "width": 64 + i * 211 % 16320, "height": 512})
        for i in range(24)
    ]
    out.append(JobSpec())
    return out


def _provider(pid: str, gpus: tuple[GpuOffer, ...], **kw: Any) -> ProviderUpserted:
    return ProviderUpserted(
        profile=ProviderProfile(
            id=pid, kind="runpod_serverless", gpus=gpus, price_snapshot=SNAP, **kw
        )
    )


def _changed_registry(seeded: RegistryState) -> RegistryState:
    profiles = seeded.providers
    events: list[ProviderUpserted | ProviderRemoved] = [
        ProviderUpserted(profile=msgspec.structs.replace(profiles["hf-endpoints"], enabled=False)),
        ProviderUpserted(profile=msgspec.structs.replace(profiles["lan-box"], enabled=True)),
        ProviderRemoved(id="runpod-pod"),
        _provider(
            "acme",
            (
                GpuOffer(gpu="b", vram_gb=24, price_usd=0.9, relative_speed=0.7),
                GpuOffer(gpu="a", vram_gb=24, price_usd=0.9, relative_speed=0.7),
                GpuOffer(gpu="big", vram_gb=96, price_usd=0.0009, unit="second", relative_speed=2),
            ),
            hardware=HardwareProfile(
                throughput_factor=0.8,
                cold_start_s=45.0,
                bills_cold_start=False,
                billing_increment_s=60.0,
            ),
            transfer_usd_per_gb=0.09,
        ),
        _provider(
            "zeta",
            (
                GpuOffer(gpu="z1", vram_gb=40, price_usd=1.0, relative_speed=1.0),
                GpuOffer(gpu="z2", vram_gb=40, price_usd=1.0, relative_speed=1.0),
            ),
            hardware=HardwareProfile(cold_start_s=7.5, billing_increment_s=1.0),
            name="Zeta",
        ),
        _provider(
            "free",
            (GpuOffer(gpu="donated", vram_gb=12, price_usd=0.0, relative_speed=0.25),),
        ),
    ]
    return fold(events, seeded)


def _telemetry(*gpus: GpuDevice, host: HostStats = HOST, sid: str = "tel-1") -> TelemetrySample:
    return msgspec.structs.replace(sample(*gpus, sample_id=sid), host=host)


def states() -> list[tuple[str, AdvisorState]]:
    seeded = fold(seed_payloads(RegistryState(), load_seed()))
    changed = _changed_registry(seeded)
    unnamed = GpuDevice(index=3, name=None, memory_total_mib=81920, memory_free_mib=80000)
    small_ram = HostStats(cpu_count=4, ram_total_mib=8192, ram_available_mib=1500)
    no_ram = HostStats(cpu_count=4)
    base = AdvisorState(registry=seeded)
    out = [
        ("no-telemetry", base),
        ("no-gpu-on", AdvisorState(telemetry=sample(), flags=ON, registry=seeded)),
        ("gpu20-on", AdvisorState(telemetry=_telemetry(gpu(0)), flags=ON, registry=seeded)),
        (
            "gpu6-on-depth3",
            AdvisorState(
                telemetry=_telemetry(gpu(0, free_mib=6 * 1024)),
                flags=ON,
                registry=seeded,
                remote_queue_depth=3,
            ),
        ),
        (
            "three-gpus-off",
            AdvisorState(
                telemetry=_telemetry(
                    gpu(0, free_mib=12 * 1024), gpu(1, free_mib=22 * 1024), gpu(2, free_mib=None)
                ),
                registry=seeded,
            ),
        ),
        (
            "unknown-free-on-saturated",
            AdvisorState(
                telemetry=_telemetry(gpu(0, free_mib=None)),
                flags=ON,
                registry=seeded,
                remote_queue_depth=8,
            ),
        ),
        ("changed-registry-on", AdvisorState(telemetry=sample(), flags=ON, registry=changed)),
        ("empty-registry-on", AdvisorState(telemetry=sample(), flags=ON)),
        (
            "small-ram-explicit-off",
            apply(
                AdvisorState(
                    telemetry=_telemetry(gpu(0, free_mib=3 * 1024), host=small_ram),
                    registry=changed,
                ),
                FlagsChanged(flags={"features.enable_compute": False}),
            ),
        ),
        (
            "big-unnamed-no-ram-on",
            AdvisorState(
                telemetry=_telemetry(unnamed, gpu(1, free_mib=1024), host=no_ram, sid="tel-9"),
                flags={**ON, "features.enable_public_gpu_adapters": True},
                registry=changed,
                remote_queue_depth=1,
            ),
        ),
    ]
    return out


CONFIGS_TOML = {
    "overrides": """
        [[price_overrides]]
        provider = "modal"
        multiplier = 0.5
        [[price_overrides]]
        provider = "replicate"
        gpu = "gpu-l40s"
        price_usd = 0.5
        [[price_overrides]]
        provider = "nobody"
        multiplier = 2.0
        [[price_overrides]]
        provider = "runpod-serverless"
        price_usd = 0.0002
        unit = "second"
    """,
    "tuned": """
        [rules.local_gpu]
        enabled = false
        [rules.cpu]
        allowed_kinds = ["image"]
        max_megapixels = 2.0
        max_minutes = 45.0
        [rules.remote]
        headroom_gb = 2.25
        [pricing]
        round_digits = 2
        transfer_base_gb = 0.5
    """,
    "strict": """
        [rules.remote]
        enabled = false
        queue_saturated_at = 2
        [rules.cpu]
        enabled = false
        [rules.local_gpu]
        headroom_fraction = 0.25
        headroom_gb = 0.0
        [pricing]
        usd_per_kwh = 0.3
        local_gpu_watts = 450.0
    """,
    "speeds": """
        [rules.remote]
        queue_saturated_at = 2
        [speed]
        local_relative_speed = 1.7
        overhead_s = 0.0
        other_minutes = 7.5
        [speed.cpu_slowdown]
        image = 3.0
        [vram]
        llm_bytes_per_param = 0.5
        [vram.image]
        base_gb = 3.0
        per_megapixel_gb = 0.0
        [vram.models_gb]
        my-model = 30.0
        [defaults]
        width = 640
        steps = 8
        [pricing]
        round_digits = 6
        transfer_gb_per_megapixel = 0.05
    """,
}


def configs() -> list[tuple[str, AdvisorConfig]]:
    return [("default", DEFAULT_CONFIG)] + [
        (name, parse_config(text, name)) for name, text in CONFIGS_TOML.items()
    ]


def cost_requests(spec_list: list[JobSpec]) -> Iterator[CostRequest]:
    queues = ("remote", "local", "cpu", "modal", "lan-box", "acme", "nope")
    for i, spec in enumerate(spec_list[:60]):
        job = msgspec.convert(msgspec.to_builtins(spec), JobSpecBody)
        yield CostRequest(queue=queues[i % len(queues)], job=job, debug=i % 5 == 0)
    for i, minutes in enumerate((0.5, 7.0, 61.25, 600.0)):
        yield CostRequest(queue=queues[i], duration_minutes=minutes)
