from __future__ import annotations

import pytest

from schemas.jobs import JobSpec
from schemas.providers import GpuOffer, HardwareProfile, PriceSnapshot, ProviderProfile
from services.advisor.config import AdvisorConfig, parse_config
from services.advisor.vram import derive, remote_run_minutes


def test_image_formula(advisor_config: AdvisorConfig) -> None:
    d = derive(JobSpec(width=1024, height=1024, batch=2), advisor_config)
    mp = 1024 * 1024 * 2 / 1e6
    assert d.pixels == 1_048_576
    assert d.vram_demand_gb == pytest.approx(6.5 + 1.5 * mp, abs=1e-4)
    assert d.vram_source == "formula"
    assert "6.5 GB image base + 1.5 GB/MP" in d.vram_formula
    assert d.minutes_reference_gpu == pytest.approx((5 + 0.15 * mp * 25) / 60, abs=1e-4)
    assert d.minutes_cpu == pytest.approx(d.minutes_reference_gpu * 40, abs=1e-3)


def test_video_counts_frames(advisor_config: AdvisorConfig) -> None:
    d = derive(JobSpec(kind="video", width=512, height=512, frames=48), advisor_config)
    assert d.megapixels_total == pytest.approx(512 * 512 * 48 / 1e6, abs=1e-4)
    assert d.vram_demand_gb == pytest.approx(10 + 0.6 * d.megapixels_total, abs=1e-3)


def test_known_model_and_hint(advisor_config: AdvisorConfig) -> None:
    d = derive(JobSpec(model="FLUX-dev", width=512, height=512), advisor_config)
    assert d.vram_source == "model"
    assert d.vram_demand_gb == pytest.approx(22 + 1.5 * 0.262144, abs=1e-4)
    hinted = derive(JobSpec(vram_gb=30, model="sdxl"), advisor_config)
    assert (hinted.vram_demand_gb, hinted.vram_source) == (30, "hint")


def test_llm_by_model_size(advisor_config: AdvisorConfig) -> None:
    assert derive(JobSpec(kind="llm", model="llama-3-70b"), advisor_config).vram_demand_gb == 141.5
    assert derive(JobSpec(kind="llm"), advisor_config).vram_demand_gb == 7 * 2 + 1.5
    d = derive(JobSpec(kind="llm", model="llama-3-8b", tokens=1000), advisor_config)
    assert d.minutes_reference_gpu == pytest.approx((5 + 0.003 * 8 * 1000) / 60, abs=1e-4)
    assert d.pixels == 0


def test_speech_and_other(advisor_config: AdvisorConfig) -> None:
    speech = derive(
        JobSpec(kind="speech", model="whisper-large-v3", audio_seconds=600), advisor_config
    )
    assert speech.vram_demand_gb == 4.0
    assert speech.minutes_reference_gpu == pytest.approx((5 + 0.05 * 600) / 60, abs=1e-4)
    other = derive(JobSpec(kind="other"), advisor_config)
    assert (other.vram_demand_gb, other.minutes_local_gpu, other.minutes_cpu) == (4.0, 1.0, 10.0)


def test_constants_come_from_config() -> None:
    advisor_config = parse_config(
        "[vram.image]\nbase_gb = 2.0\nper_megapixel_gb = 0.0\n[speed]\nlocal_relative_speed = 2.0\n"
    )
    d = derive(JobSpec(), advisor_config)
    assert d.vram_demand_gb == 2.0
    assert d.minutes_local_gpu == pytest.approx(d.minutes_reference_gpu / 2, abs=1e-4)


def test_remote_minutes_scale_with_speed() -> None:
    offer = GpuOffer(gpu="x", vram_gb=24, price_usd=1.0, relative_speed=0.5)
    profile = ProviderProfile(
        id="p",
        kind="modal",
        gpus=(offer,),
        price_snapshot=PriceSnapshot(date="2026-01-01", source="test"),
        hardware=HardwareProfile(throughput_factor=0.8),
    )
    assert remote_run_minutes(2.0, profile, offer) == 5.0
