"""Cost preview: what a job (or a bare duration) would cost on each target.

Pure functions of the work, a registry snapshot, the flags and the config. No
billing flows through gpuroute: every estimate says so in its ``notes``, and a
remote estimate made while ``features.enable_compute`` is off is marked
``informational`` with a warning.

For a provider, the GPU rented is the one with the lowest total cost among
those whose VRAM >= demand + ``rules.remote.headroom_gb`` (any GPU for a bare
duration). The total is split as::

    compute        = provider's cheapest rate ($/h) * billed run hours
    vram_surcharge = (rented GPU's rate - cheapest rate) * billed run hours
    cold_start     = rented GPU's rate * cold-start hours (when billed)
    transfer       = transfer_gb * provider's transfer_usd_per_gb

Billed time is rounded up to the provider's ``billing_increment_s``. Local and
CPU cost is energy: watts * hours * ``pricing.usd_per_kwh`` / 1000.
A bare ``duration_minutes`` is taken as the run time on whichever target is
priced (no speed scaling). The request and reply types (``CostRequest``,
``CostPreview``, ``CostEstimate``, ``CostBreakdown``) live in ``schemas/advisor.py``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import msgspec

from schemas.advisor import CostBreakdown, CostEstimate, CostPreview, CostRequest, JobDerived
from schemas.flags import ENABLE_COMPUTE
from schemas.providers import GpuOffer, ProviderProfile, ProviderStats
from services.advisor.config import AdvisorConfig
from services.advisor.errors import CostRequestError, ProviderNotFound
from services.advisor.quotes import PriceTable, Quote
from services.advisor.registry import RegistryState, stats, with_price_overrides
from services.advisor.vram import derive, remote_run_minutes

NO_BILLING_NOTE = (
    "Estimate only: no billing flows through gpuroute; a provider bills your own "
    "account directly, at its current prices."
)
REMOTE_OFF_WARNING = (
    "remote execution is disabled (features.enable_compute is off): "
    "this remote estimate is informational only"
)


def remote_enabled(flags: dict[str, bool]) -> bool:
    return bool(flags.get(ENABLE_COMPUTE, False))


class Work(msgspec.Struct, frozen=True, kw_only=True):
    """What is being priced. ``scaled``: minutes are on the reference GPU and
    scale with each GPU's speed; otherwise they are the run time everywhere."""

    minutes: float
    scaled: bool
    local_minutes: float
    cpu_minutes: float
    vram_demand_gb: float | None = None
    transfer_gb: float = 0.0

    @classmethod
    def of_job(cls, d: JobDerived) -> Work:
        return cls(
            minutes=d.minutes_reference_gpu,
            scaled=True,
            local_minutes=d.minutes_local_gpu,
            cpu_minutes=d.minutes_cpu,
            vram_demand_gb=d.vram_demand_gb,
            transfer_gb=d.transfer_gb,
        )

    @classmethod
    def of_duration(cls, minutes: float) -> Work:
        return cls(minutes=minutes, scaled=False, local_minutes=minutes, cpu_minutes=minutes)


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:.2f}"


def _billed_seconds(seconds: float, increment: float) -> float:
    return math.ceil(seconds / increment - 1e-9) * increment if increment > 0 else seconds


def energy_rate(target: Literal["local", "cpu"], config: AdvisorConfig) -> float:
    """USD per hour of energy on the local GPU or the CPU."""
    p = config.pricing
    return (p.local_gpu_watts if target == "local" else p.cpu_watts) / 1000 * p.usd_per_kwh


def energy_estimate(
    target: Literal["local", "cpu"], work: Work, config: AdvisorConfig
) -> CostEstimate:
    p = config.pricing
    watts = p.local_gpu_watts if target == "local" else p.cpu_watts
    minutes = work.local_minutes if target == "local" else work.cpu_minutes
    rate = energy_rate(target, config)
    total = rate * minutes / 60
    where = "the local GPU" if target == "local" else "the CPU"
    return CostEstimate(
        target=target,
        estimate=round(total, p.round_digits),
        total_usd=total,
        minutes_total=round(minutes, 4),
        breakdown=CostBreakdown(
            minutes=round(minutes, 4),
            billed_minutes=round(minutes, 4),
            base_rate_usd_per_hour=round(rate, 6),
            rate_usd_per_hour=round(rate, 6),
            compute_usd=round(total, 6),
            transfer_gb=0.0,
            transfer_usd=0.0,
            vram_surcharge_usd=0.0,
            cold_start_s=0.0,
            cold_start_usd=0.0,
        ),
        hints=[
            f"{minutes:.2f} min on {where}; energy only: {watts:g} W at "
            f"${p.usd_per_kwh:g}/kWh = {_money(total)}"
        ],
        notes=[NO_BILLING_NOTE],
    )


def provider_estimate(
    profile: ProviderProfile, work: Work, config: AdvisorConfig, enabled: bool
) -> CostEstimate | None:
    """The cheapest way to run ``work`` at ``profile``; None when no GPU fits."""
    table = PriceTable((profile,), config.rules.remote.headroom_gb)
    quotes = table.quotes(
        work.minutes, work.scaled, work.vram_demand_gb, work.transfer_gb, include_disabled=True
    )
    return quote_estimate(quotes[0], work, config, enabled) if quotes else None


def quote_estimate(quote: Quote, work: Work, config: AdvisorConfig, enabled: bool) -> CostEstimate:
    """The full estimate (breakdown, hints, warnings) of a provider's cheapest offer."""
    profile, offer = quote.provider.profile, quote.offer.offer
    breakdown, total = _cost(profile, offer, work, quote.provider.base)
    return _remote_estimate(profile, offer, work, breakdown, total, config, enabled)


class _Amounts(NamedTuple):
    run_min: float
    billed_s: float
    rate: float
    compute: float
    surcharge: float
    cold: float
    transfer: float

    @property
    def total(self) -> float:
        return self.compute + self.surcharge + self.cold + self.transfer


def _amounts(profile: ProviderProfile, offer: GpuOffer, work: Work, base: float) -> _Amounts:
    """USD amounts of ``work`` on ``offer``; ``base``: the provider's cheapest $/h."""
    hw = profile.hardware
    run_min = remote_run_minutes(work.minutes, profile, offer) if work.scaled else work.minutes
    cold_s = hw.cold_start_s if hw.bills_cold_start else 0.0
    billed_s = _billed_seconds(run_min * 60 + cold_s, hw.billing_increment_s)
    run_billed_h = (billed_s - cold_s) / 3600
    rate = offer.hourly_usd
    return _Amounts(
        run_min=run_min,
        billed_s=billed_s,
        rate=rate,
        compute=base * run_billed_h,
        surcharge=(rate - base) * run_billed_h,
        cold=rate * cold_s / 3600,
        transfer=work.transfer_gb * profile.transfer_usd_per_gb,
    )


def _cost(
    profile: ProviderProfile, offer: GpuOffer, work: Work, base: float
) -> tuple[CostBreakdown, float]:
    a = _amounts(profile, offer, work, base)
    return CostBreakdown(
        minutes=round(a.run_min, 4),
        billed_minutes=round(a.billed_s / 60, 4),
        base_rate_usd_per_hour=round(base, 6),
        rate_usd_per_hour=round(a.rate, 6),
        compute_usd=round(a.compute, 6),
        transfer_gb=work.transfer_gb,
        transfer_usd=round(a.transfer, 6),
        vram_surcharge_usd=round(a.surcharge, 6),
        cold_start_s=profile.hardware.cold_start_s,
        cold_start_usd=round(a.cold, 6),
    ), a.total


def _remote_estimate(
    profile: ProviderProfile,
    offer: GpuOffer,
    work: Work,
    b: CostBreakdown,
    total: float,
    config: AdvisorConfig,
    enabled: bool,
) -> CostEstimate:
    hw = profile.hardware
    name = profile.name or profile.id
    hints = [
        f"{b.minutes:.2f} min on {offer.gpu} ({offer.vram_gb:g} GB) at "
        f"${offer.hourly_usd:.3f}/h ({name})",
        f"cold start ~{hw.cold_start_s:g} s "
        + (f"billed: {_money(b.cold_start_usd)}" if hw.bills_cold_start else "not billed"),
        f"prices from {profile.price_snapshot.source} as of {profile.price_snapshot.date}",
    ]
    if b.vram_surcharge_usd > 0 and work.vram_demand_gb is not None:
        hints.append(
            f"VRAM demand {work.vram_demand_gb:.2f} GB needs a bigger GPU than the cheapest one: "
            f"+{_money(b.vram_surcharge_usd)}"
        )
    if hw.billing_increment_s > 0:
        hints.append(f"billed in {hw.billing_increment_s:g} s increments: {b.billed_minutes:g} min")
    warnings = [] if enabled else [REMOTE_OFF_WARNING]
    if not profile.enabled:
        warnings.append(f"provider {profile.id} is disabled: the advisor will not pick it")
    return CostEstimate(
        target="remote",
        estimate=round(total, config.pricing.round_digits),
        total_usd=total,
        minutes_total=round(b.minutes + hw.cold_start_s / 60, 4),
        breakdown=b,
        provider_id=profile.id,
        gpu=offer.gpu,
        informational=not enabled,
        price_snapshot=profile.price_snapshot,
        hints=hints,
        notes=[NO_BILLING_NOTE],
        warnings=warnings,
    )


def compare_providers(
    work: Work,
    registry: RegistryState,
    config: AdvisorConfig,
    enabled: bool,
    include_disabled: bool = False,
) -> tuple[list[CostEstimate], list[str]]:
    """Every registered provider that can run ``work``, cheapest first.

    Returns the estimates and one line per provider skipped and why. Ties are
    broken by provider id, so the order is deterministic.
    """
    table = PriceTable.of(registry, config)
    quotes = table.quotes(
        work.minutes, work.scaled, work.vram_demand_gb, work.transfer_gb, include_disabled
    )
    found = [quote_estimate(q, work, config, enabled) for q in quotes]
    skipped = table.skipped(work.vram_demand_gb, include_disabled)
    found.sort(key=lambda e: (e.total_usd, e.provider_id or ""))
    return found, skipped


def preview_costs(
    request: CostRequest, registry: RegistryState, flags: dict[str, bool], config: AdvisorConfig
) -> CostPreview:
    """Answer ``POST /api/compute/costs``. Raises ``ProviderNotFound`` or ``CostRequestError``."""
    if request.job is None and request.duration_minutes is None:
        raise CostRequestError("give a `job` or a `duration_minutes` to price")
    derived = derive(request.job, config) if request.job is not None else None
    work = (
        Work.of_job(derived)
        if derived is not None
        else Work.of_duration(request.duration_minutes or 0.0)
    )
    enabled = remote_enabled(flags)
    debug = _Debug(stats(registry), derived) if request.debug else _Debug(None, None)
    if request.queue in ("local", "cpu"):
        est = energy_estimate("local" if request.queue == "local" else "cpu", work, config)
        return _preview(request.queue, est, [], [], debug)
    if request.queue == "remote":
        found, skipped = compare_providers(work, registry, config, enabled)
        best = found[0] if found else None
        hints = [f"skipped {s}" for s in skipped]
        if best is not None and len(found) > 1:
            hints.insert(
                0,
                f"cheapest of {len(found)} providers: {best.provider_id} at "
                f"{_money(best.total_usd)}; dearest {found[-1].provider_id} at "
                f"{_money(found[-1].total_usd)}",
            )
        return _preview("remote", best, found, hints, debug, enabled)
    profile = with_price_overrides(registry, config.price_overrides).providers.get(request.queue)
    if profile is None:
        raise ProviderNotFound(request.queue)
    one = provider_estimate(profile, work, config, enabled)
    hints = [] if one else [f"no GPU at {profile.id} has {work.vram_demand_gb:.2f} GB + headroom"]
    return _preview(request.queue, one, [], hints, debug, enabled)


class _Debug(NamedTuple):
    registry: ProviderStats | None
    job: JobDerived | None


def _preview(
    queue: str,
    best: CostEstimate | None,
    comparison: list[CostEstimate],
    hints: list[str],
    debug: _Debug,
    enabled: bool = True,
) -> CostPreview:
    warnings = list(best.warnings) if best else ([] if enabled else [REMOTE_OFF_WARNING])
    if best is None:
        warnings.append("no registered provider can run this job")
    return CostPreview(
        queue=queue,
        estimate=best.estimate if best else None,
        informational=best.informational if best else not enabled,
        provider_id=best.provider_id if best else None,
        gpu=best.gpu if best else None,
        breakdown=best.breakdown if best else None,
        hints=(list(best.hints) if best else []) + hints,
        notes=[NO_BILLING_NOTE],
        warnings=warnings,
        comparison=comparison,
        registry=debug.registry,
        job=debug.job,
    )
