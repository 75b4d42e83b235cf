"""Every provider's offers, prepared once per registry and config, and the cheapest
offer of each provider for a piece of work.

A decision prices every offer of every enabled provider (see ``pricing.py`` for
the cost model). What does not depend on the job is computed once here, when a
:class:`PriceTable` is built: the price overrides applied, each provider's base
rate, billed cold start and billing increment, and per offer its hourly rate,
VRAM surcharge rate, cold-start cost and speed. A ``rules.Decider`` builds its
table on first use (the advisor service keeps one Decider per state); a cost
preview builds one per request.

:meth:`PriceTable.quotes` then does, per offer, only what depends on the job,
with exactly the float operations of ``pricing._amounts`` in the same order (a
test keeps the two equal, the golden test keeps every decision byte-identical):
the run time on each distinct GPU speed is rounded once and shared by the
offers of that speed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import NamedTuple

from schemas.providers import GpuOffer, ProviderProfile
from services.advisor.config import AdvisorConfig
from services.advisor.registry import RegistryState, with_price_overrides


class Offer(NamedTuple):
    """One GPU offer, priced; the fields :func:`cheapest` reads come first."""

    slot: int
    """Index of this offer's speed in :attr:`PriceTable.speeds`."""
    surcharge_rate: float
    """$/h above the provider's cheapest GPU."""
    cold_usd: float
    """The billed cold start, in USD (0 when not billed)."""
    vram_gb: float
    gpu: str
    rate: float
    """$/h of this GPU."""
    offer: GpuOffer


class Provider(NamedTuple):
    profile: ProviderProfile
    base: float
    """The provider's cheapest rate, $/h."""
    cold_s: float
    """Billed cold start, s (0 when the provider does not bill it)."""
    increment: float
    transfer_usd_per_gb: float
    biggest_gb: float
    offers: tuple[Offer, ...]
    """By VRAM, then in the profile's order."""
    vrams: tuple[float, ...]
    """``offers``' VRAM, ascending: the offers with at least N GB are a suffix."""


class Quote(NamedTuple):
    """The cheapest fitting offer of one provider. Tuples order by (total, provider id)."""

    total_usd: float
    provider_id: str
    run_min: float
    """Minutes of GPU work (rounded to 4 decimals), cold start excluded."""
    provider: Provider
    offer: Offer

    @property
    def minutes_total(self) -> float:
        """Run time with the cold start, as a ``CostEstimate`` reports it."""
        return round(round(self.run_min, 4) + self.provider.profile.hardware.cold_start_s / 60, 4)


class PriceTable:
    """Providers (in registry order) priced for quotes; ``of`` applies a config's overrides."""

    def __init__(self, profiles: Iterable[ProviderProfile], headroom_gb: float) -> None:
        self.headroom_gb = headroom_gb
        speeds: dict[float, int] = {}
        self.providers = tuple(_provider(p, speeds) for p in profiles)
        self.enabled = tuple(p for p in self.providers if p.profile.enabled)
        self.speeds = tuple(speeds)

    @classmethod
    def of(cls, registry: RegistryState, config: AdvisorConfig) -> PriceTable:
        priced = with_price_overrides(registry, config.price_overrides)
        return cls(priced.providers.values(), config.rules.remote.headroom_gb)

    def need(self, vram_demand_gb: float | None) -> float | None:
        """The VRAM a GPU must have (demand + headroom); None: any GPU."""
        return None if vram_demand_gb is None else vram_demand_gb + self.headroom_gb

    def run_minutes(self, minutes: float, scaled: bool) -> list[float]:
        """Minutes of work on each of :attr:`speeds` (``scaled``: ``minutes`` are on
        the reference GPU; otherwise they are the run time everywhere)."""
        if scaled:
            return [round(minutes / speed, 4) for speed in self.speeds]
        return [minutes] * len(self.speeds)

    def quotes(
        self,
        minutes: float,
        scaled: bool,
        vram_demand_gb: float | None,
        transfer_gb: float,
        include_disabled: bool = False,
    ) -> list[Quote]:
        """The cheapest fitting offer of every (enabled) provider that has one,
        cheapest first (ties: provider id)."""
        need = self.need(vram_demand_gb)
        run = self.run_minutes(minutes, scaled)
        found = []
        for p in self.providers if include_disabled else self.enabled:
            if need is None or p.biggest_gb >= need:
                found.append(cheapest(p, run, need, transfer_gb))
        found.sort()
        return found

    def skipped(self, vram_demand_gb: float | None, include_disabled: bool = False) -> list[str]:
        """One line per provider :meth:`quotes` leaves out, and why."""
        need = self.need(vram_demand_gb)
        lines = []
        for p in self.providers:
            if not p.profile.enabled and not include_disabled:
                lines.append(f"{p.profile.id}: disabled")
            elif need is not None and p.biggest_gb < need:
                lines.append(
                    f"{p.profile.id}: largest GPU {p.biggest_gb:g} GB < {vram_demand_gb:.2f} GB"
                    f" + {self.headroom_gb:g} GB headroom"
                )
        return lines


def cheapest(p: Provider, run: list[float], need: float | None, transfer_gb: float) -> Quote:
    """The offer of ``p`` with the lowest total (ties: less VRAM, then the name, then
    the profile's order) among those with at least ``need`` GB (one must fit);
    ``run``: minutes of work per speed slot.

    The arithmetic of ``pricing._amounts``, without rounding what only the
    breakdown shows: this runs for every offer of every provider on every decision.
    """
    base, cold_s, increment = p.base, p.cold_s, p.increment
    transfer = transfer_gb * p.transfer_usd_per_gb
    offers = p.offers if need is None else p.offers[bisect.bisect_left(p.vrams, need) :]
    if not offers:
        raise ValueError(f"no GPU of {p.profile.id} has {need} GB")
    best = offers[0]
    best_total = math.inf
    for o in offers:
        slot, surcharge_rate, cold_usd, vram_gb, gpu, _, _ = o
        seconds = run[slot] * 60 + cold_s
        if increment > 0:
            seconds = math.ceil(seconds / increment - 1e-9) * increment
        hours = (seconds - cold_s) / 3600
        total = base * hours + surcharge_rate * hours + cold_usd + transfer
        if total < best_total or (
            total == best_total and (vram_gb, gpu) < (best.vram_gb, best.gpu)
        ):
            best, best_total = o, total
    return Quote(best_total, p.profile.id, run[best.slot], p, best)


def _provider(profile: ProviderProfile, speeds: dict[float, int]) -> Provider:
    hw = profile.hardware
    base = min(g.hourly_usd for g in profile.gpus)
    cold_s = hw.cold_start_s if hw.bills_cold_start else 0.0
    offers = []
    for g in profile.gpus:
        speed = g.relative_speed * hw.throughput_factor
        slot = speeds.setdefault(speed, len(speeds))
        rate = g.price_usd * 3600 if g.unit == "second" else g.price_usd
        offers.append(Offer(slot, rate - base, rate * cold_s / 3600, g.vram_gb, g.gpu, rate, g))
    offers.sort(key=lambda o: o.vram_gb)
    return Provider(
        profile=profile,
        base=base,
        cold_s=cold_s,
        increment=hw.billing_increment_s,
        transfer_usd_per_gb=profile.transfer_usd_per_gb,
        biggest_gb=max(g.vram_gb for g in profile.gpus),
        offers=tuple(offers),
        vrams=tuple(o.vram_gb for o in offers),
    )
