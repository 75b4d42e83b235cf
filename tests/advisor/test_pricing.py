from __future__ import annotations

import msgspec
import pytest

from schemas.advisor import CostRequest
from schemas.jobs import JobSpec
from schemas.providers import (
    GpuOffer,
    HardwareProfile,
    PriceSnapshot,
    ProviderProfile,
    ProviderUpserted,
)
from schemas.strict import strict
from services.advisor.config import AdvisorConfig, parse_config
from services.advisor.errors import CostRequestError, ProviderNotFound
from services.advisor.pricing import (
    NO_BILLING_NOTE,
    REMOTE_OFF_WARNING,
    Work,
    compare_providers,
    preview_costs,
    provider_estimate,
)
from services.advisor.registry import RegistryState, fold

from .factories import ON

SNAP = PriceSnapshot(date="2026-11-01", source="https://example.test/pricing")


def provider(pid: str = "p", **hw: float | bool) -> ProviderProfile:
    return ProviderProfile(
        id=pid,
        kind="runpod_serverless",
        gpus=(
            GpuOffer(gpu="small", vram_gb=16, price_usd=0.36, unit="hour", relative_speed=1.0),
            GpuOffer(gpu="big", vram_gb=48, price_usd=0.0003, unit="second", relative_speed=1.0),
        ),
        price_snapshot=SNAP,
        hardware=HardwareProfile(**hw),  # type: ignore[arg-type]
        transfer_usd_per_gb=0.5,
    )


def test_breakdown_adds_up(advisor_config: AdvisorConfig) -> None:
    work = Work(
        minutes=10.0,
        scaled=True,
        local_minutes=10,
        cpu_minutes=100,
        vram_demand_gb=30.0,
        transfer_gb=2.0,
    )
    est = provider_estimate(provider(cold_start_s=60.0), work, advisor_config, enabled=True)
    assert est is not None and est.gpu == "big"  # the 16 GB GPU does not fit 30 GB
    b = est.breakdown
    assert (b.minutes, b.base_rate_usd_per_hour, b.rate_usd_per_hour) == (10.0, 0.36, 1.08)
    assert b.compute_usd == pytest.approx(0.36 * 10 / 60)
    assert b.vram_surcharge_usd == pytest.approx((1.08 - 0.36) * 10 / 60)
    assert b.cold_start_usd == pytest.approx(1.08 / 60)
    assert b.transfer_usd == pytest.approx(1.0)
    total = b.compute_usd + b.vram_surcharge_usd + b.cold_start_usd + b.transfer_usd
    assert est.total_usd == pytest.approx(total)
    assert est.estimate == round(total, 4)
    assert est.minutes_total == 11.0
    assert est.notes == [NO_BILLING_NOTE]
    assert any("needs a bigger GPU" in h for h in est.hints)
    assert not est.informational and est.warnings == []


def test_billing_increment_and_unbilled_cold_start(advisor_config: AdvisorConfig) -> None:
    work = Work.of_duration(1.5)
    per_minute = provider_estimate(
        provider(billing_increment_s=60, cold_start_s=30), work, advisor_config, True
    )
    assert per_minute is not None and per_minute.breakdown.billed_minutes == 2.0
    free_boot = provider_estimate(
        provider(cold_start_s=30, bills_cold_start=False), work, advisor_config, True
    )
    assert free_boot is not None and free_boot.breakdown.cold_start_usd == 0
    assert any("not billed" in h for h in free_boot.hints)


def test_nothing_fits(advisor_config: AdvisorConfig) -> None:
    work = Work(minutes=1, scaled=True, local_minutes=1, cpu_minutes=1, vram_demand_gb=60)
    assert provider_estimate(provider(), work, advisor_config, True) is None


def test_compare_is_cheapest_first(seeded: RegistryState, advisor_config: AdvisorConfig) -> None:
    found, skipped = compare_providers(Work.of_duration(2), seeded, advisor_config, enabled=True)
    totals = [e.total_usd for e in found]
    assert totals == sorted(totals) and len(found) == 5
    assert skipped == ["lan-box: disabled"]
    assert {e.provider_id for e in found} == {
        "runpod-pod",
        "runpod-serverless",
        "hf-endpoints",
        "replicate",
        "modal",
    }


def test_issue_example_remote_flag_off(
    seeded: RegistryState, advisor_config: AdvisorConfig
) -> None:
    request = msgspec.json.decode(
        b'{"queue":"remote","duration_minutes":2,"debug":true}', type=CostRequest
    )
    p = preview_costs(request, seeded, {}, advisor_config)
    assert p.estimate is not None and p.estimate == p.comparison[0].estimate
    assert p.informational is True
    assert REMOTE_OFF_WARNING in p.warnings
    assert NO_BILLING_NOTE in p.notes
    assert p.breakdown is not None and p.breakdown.minutes == 2.0
    assert p.hints and any(h.startswith("cheapest of 5 providers") for h in p.hints)
    assert p.registry is not None and p.registry.total == 6
    assert all(e.informational for e in p.comparison)


def test_remote_flag_on_is_not_informational(
    seeded: RegistryState, advisor_config: AdvisorConfig
) -> None:
    p = preview_costs(CostRequest(queue="remote", duration_minutes=2), seeded, ON, advisor_config)
    assert p.informational is False and p.warnings == []
    assert p.registry is None and p.job is None
    assert p.notes == [NO_BILLING_NOTE]


def test_job_spec_preview(seeded: RegistryState, advisor_config: AdvisorConfig) -> None:
    job = JobSpec(kind="llm", model="codellama-34b", debug=True)
    p = preview_costs(CostRequest(queue="remote", job=job, debug=True), seeded, ON, advisor_config)
    assert p.job is not None and p.job.vram_demand_gb == 69.5
    vram: dict[tuple[str | None, str | None], float] = {
        (pid, g.gpu): g.vram_gb for pid, pr in seeded.providers.items() for g in pr.gpus
    }
    assert all(vram[(e.provider_id, e.gpu)] >= 70 for e in p.comparison)
    assert len(p.comparison) == 5
    assert all(e.breakdown.vram_surcharge_usd > 0 for e in p.comparison)
    too_big = JobSpec(kind="llm", model="llama-3-70b")  # 141.5 GB + 0.5 headroom > 141 GB
    assert preview_costs(CostRequest(job=too_big), seeded, ON, advisor_config).estimate is None


@pytest.mark.parametrize("queue", ["local", "cpu"])
def test_local_and_cpu_cost_energy(
    seeded: RegistryState, advisor_config: AdvisorConfig, queue: str
) -> None:
    p = preview_costs(CostRequest(queue=queue, duration_minutes=60), seeded, {}, advisor_config)
    watts = 350 if queue == "local" else 120
    assert p.estimate == round(watts / 1000 * 0.17, 4)
    assert p.informational is False and p.warnings == [] and p.notes == [NO_BILLING_NOTE]
    assert p.provider_id is None


def test_single_provider(seeded: RegistryState, advisor_config: AdvisorConfig) -> None:
    p = preview_costs(
        CostRequest(queue="replicate", duration_minutes=1), seeded, ON, advisor_config
    )
    assert p.provider_id == "replicate" and p.gpu == "gpu-t4"
    assert p.estimate == round(0.000225 * 60, 4)
    disabled = preview_costs(
        CostRequest(queue="lan-box", duration_minutes=60), seeded, ON, advisor_config
    )
    assert any("lan-box is disabled" in w for w in disabled.warnings)
    with pytest.raises(ProviderNotFound, match="unknown provider 'nope'"):
        preview_costs(CostRequest(queue="nope", duration_minutes=1), seeded, ON, advisor_config)


def test_price_overrides_apply(seeded: RegistryState) -> None:
    advisor_config = parse_config('[[price_overrides]]\nprovider = "replicate"\nmultiplier = 2.0\n')
    p = preview_costs(
        CostRequest(queue="replicate", duration_minutes=1), seeded, ON, advisor_config
    )
    assert p.estimate == round(0.000225 * 60 * 2, 4)


def test_bad_requests(seeded: RegistryState, advisor_config: AdvisorConfig) -> None:
    with pytest.raises(CostRequestError):
        preview_costs(CostRequest(queue="remote"), seeded, {}, advisor_config)
    with pytest.raises(
        msgspec.ValidationError, match=r"Expected `float` > 0.0 - at `\$.duration_minutes`"
    ):
        msgspec.json.decode(b'{"duration_minutes": 0}', type=CostRequest)
    with pytest.raises(msgspec.ValidationError, match="unknown field `minutes`"):
        msgspec.json.decode(b'{"minutes": 2}', type=strict(CostRequest))  # as a person types it
    assert msgspec.json.decode(b'{"minutes": 2}', type=CostRequest) == CostRequest()
    empty = preview_costs(CostRequest(duration_minutes=1), RegistryState(), {}, advisor_config)
    assert empty.estimate is None
    assert "no registered provider can run this job" in empty.warnings
    assert REMOTE_OFF_WARNING in empty.warnings


def test_tie_break_is_by_provider_id(advisor_config: AdvisorConfig) -> None:
    reg = fold(
        [ProviderUpserted(profile=provider("zeta")), ProviderUpserted(profile=provider("alpha"))]
    )
    found, _ = compare_providers(Work.of_duration(1), reg, advisor_config, True)
    assert [e.provider_id for e in found] == ["alpha", "zeta"]


@pytest.mark.parametrize("minutes", [0.01, 0.37, 2.0, 59.9, 600.0])
@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("vram", [None, 10.0, 30.0])
def test_the_quote_ranking_matches_the_breakdown_arithmetic(
    seeded: RegistryState,
    advisor_config: AdvisorConfig,
    minutes: float,
    scaled: bool,
    vram: float | None,
) -> None:
    from services.advisor.pricing import _amounts
    from services.advisor.quotes import PriceTable, cheapest

    work = Work(
        minutes=minutes,
        scaled=scaled,
        local_minutes=1,
        cpu_minutes=1,
        transfer_gb=0.3,
        vram_demand_gb=vram,
    )
    extra = fold(
        [ProviderUpserted(profile=provider("xfer", cold_start_s=40.0, billing_increment_s=60.0))]
    )
    profiles = [*seeded.providers.values(), *extra.providers.values()]
    table = PriceTable(profiles, advisor_config.rules.remote.headroom_gb)
    run = table.run_minutes(minutes, scaled)
    need = table.need(vram)
    for p in table.providers:
        profile = p.profile
        base = min(g.hourly_usd for g in profile.gpus)
        fitting = [g for g in profile.gpus if need is None or g.vram_gb >= need]
        if not fitting:
            continue
        slow = min(
            fitting, key=lambda g: (_amounts(profile, g, work, base).total, g.vram_gb, g.gpu)
        )
        quote = cheapest(p, run, need, work.transfer_gb)
        assert quote.offer.offer == slow
        assert quote.total_usd == _amounts(profile, slow, work, base).total
        est = provider_estimate(profile, work, advisor_config, enabled=True)
        assert est is not None and quote.minutes_total == est.minutes_total
