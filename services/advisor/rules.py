"""The decision: local GPU, remote provider, CPU, wait or infeasible. A pure function.

``decide(spec, context, config)`` reads nothing else (no clock, no I/O, no
randomness), so a replay with the recorded inputs gets the same decision.
The rules, in order, each switchable and tuned in ``[rules]`` of the config:

0. ``preferred_target``: the spec's ``prefer`` (``local``, ``cpu``, ``remote``
   or a provider id) wins when that option is feasible by the rules below.
1. ``local_gpu``: the local GPU with the most free VRAM takes the job when
   free VRAM >= demand * (1 + headroom_fraction) + headroom_gb.
2. ``remote_cheapest``: when ``features.enable_compute`` is on and the remote
   queue depth < ``queue_saturated_at``, the cheapest enabled provider with a
   GPU that fits the VRAM demand and whose estimate <= the spec's max cost.
3. ``cpu_small_job``: the CPU, when the job is small enough (megapixels,
   minutes, RAM) and its kind is allowed there.
4. ``wait_for_local_gpu``: otherwise, wait for the local GPU, when the job will
   fit once something frees.
5. ``infeasible``: no target can ever run the job (its VRAM demand is above
   every local GPU's total and every provider's largest offer, or its max cost
   is below every fitting price, and the CPU cannot take it): the reason says
   why for each target with the numbers; no minutes, no price.

The reason names the rule that fired and, in order, why each earlier rule did
not, with the numbers used. With the flag off it says remote was not
considered because of the flag.

:class:`Decider` is the same function prepared for one context and config:
what does not depend on the job is computed once (the advisor service keeps
one per state), and the rules after the one that fires are only weighed when
the details are asked for. ``decide`` is ``Decider(context, config).decide``.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from schemas.advisor import (
    Candidate,
    ContextSnapshot,
    Decision,
    DecisionDetails,
    JobDerived,
    RuleName,
)
from schemas.flags import ENABLE_COMPUTE
from schemas.jobs import JobSpec, Target
from services.advisor.config import AdvisorConfig, config_digest
from services.advisor.decision import AdviceRecord, DecisionContext
from services.advisor.jobspec import as_event_spec
from services.advisor.pricing import energy_rate, remote_enabled
from services.advisor.quotes import PriceTable, Quote
from services.advisor.vram import derive

_NO_SAMPLE = "none"
"""The sample id of ``state.context``'s stand-in before any telemetry arrived."""


class _Option(NamedTuple):
    candidate: Candidate
    gpu_index: int | None = None


def _no(rule: RuleName, target: Target, why: str) -> _Option:
    return _Option(Candidate(rule=rule, target=target, feasible=False, why=why))


_LABEL: dict[RuleName, str] = {
    "local_gpu": "Local GPU",
    "remote_cheapest": "Remote",
    "cpu_small_job": "CPU",
    "preferred_target": "Preferred target",
    "wait_for_local_gpu": "Wait",
    "infeasible": "Infeasible",
}
_WAIT_PREFERRED = _no("preferred_target", "wait", "waiting is not a target one can prefer")


class _Job:
    """One decision in progress: the spec, what is derived from it, and the options
    and quotes as far as they were needed (each computed at most once)."""

    __slots__ = ("d", "options", "quotes", "spec")

    def __init__(self, spec: JobSpec, d: JobDerived) -> None:
        self.spec = spec
        self.d = d
        self.options: list[_Option | None] = [None, None, None]
        self.quotes: list[Quote] | None = None


class Decider:
    """The rules prepared for one context and config.

    What does not depend on the job (the best local GPU, whether remote is
    usable, the providers' price table, rates, thresholds as text) is computed
    once; :meth:`decide` does the rest. The advisor service keeps one per state
    and replaces it when its state changes; :func:`decide` makes one per call.
    """

    def __init__(self, context: DecisionContext, config: AdvisorConfig) -> None:
        self.context = context
        self.config = config
        self.remote_on = remote_enabled(context.flags)
        self._table: PriceTable | None = None
        self._local_rate = energy_rate("local", config)
        self._cpu_rate = energy_rate("cpu", config)
        self._digits = config.pricing.round_digits
        self._init_local()
        self._init_remote()
        cpu = config.rules.cpu
        self._ram = context.telemetry.host.ram_available_gb
        self._max_mp, self._max_min = f"{cpu.max_megapixels:g}", f"{cpu.max_minutes:g}"

    def _init_local(self) -> None:
        rule = self.config.rules.local_gpu
        self._local_factor = 1 + rule.headroom_fraction
        self._local_tail = f" x {1 + rule.headroom_fraction:g} + {rule.headroom_gb:g} GB headroom)"
        self._local_no: _Option | None = None
        self._local_best: tuple[float, int, str | None] = (0.0, -1, None)
        self._local_gpu = ""
        t = self.context.telemetry
        if not rule.enabled:
            why = "rule disabled in config"
        elif not t.gpus:
            why = f"no GPU ({t.reason or 'none reported'})"
        else:
            known = [(g.free_gb, g) for g in t.gpus if g.free_gb is not None]
            if not known:
                why = f"free VRAM unknown on all {len(t.gpus)} GPU(s)"
            else:
                free, best = max(known, key=lambda fg: (fg[0], -fg[1].index))
                assert free is not None
                self._local_best = (free, best.index, best.name)
                self._local_gpu = f"GPU {best.index} ({best.name or 'unnamed'}) has {free:.2f} GB"
                return
        self._local_no = _no("local_gpu", "local", why)

    def _init_remote(self) -> None:
        rule = self.config.rules.remote
        depth = self.context.remote_queue_depth
        self._queue = f"(queue depth {depth} < {rule.queue_saturated_at}"
        self._headroom = f"{rule.headroom_gb:g} GB headroom"
        why = None
        if not rule.enabled:
            why = "rule disabled in config"
        elif not self.remote_on:
            why = f"not considered, {ENABLE_COMPUTE} is off"
        elif depth >= rule.queue_saturated_at:
            why = f"queue saturated: depth {depth} >= {rule.queue_saturated_at}"
        self._remote_no = None if why is None else _no("remote_cheapest", "remote", why)

    @property
    def table(self) -> PriceTable:
        """The providers as priced by the config (built on first use)."""
        if self._table is None:
            self._table = PriceTable.of(self.context.registry, self.config)
        return self._table

    def _quotes(self, job: _Job) -> list[Quote]:
        if job.quotes is None:
            d = job.d
            job.quotes = self.table.quotes(
                d.minutes_reference_gpu, True, d.vram_demand_gb, d.transfer_gb
            )
        return job.quotes

    def _energy(self, rate: float, minutes: float) -> float:
        return round(rate * minutes / 60, self._digits)

    def _local(self, d: JobDerived) -> _Option:
        if self._local_no is not None:
            return self._local_no
        free, index, name = self._local_best
        need = d.vram_demand_gb * self._local_factor + self.config.rules.local_gpu.headroom_gb
        if free < need:
            why = f"best free VRAM {free:.2f} GB (GPU {index}) < {need:.2f} GB needed"
            return _no("local_gpu", "local", why)
        why = (
            f"{self._local_gpu} free >= {need:.2f} GB needed ({d.vram_demand_gb:.2f} GB"
            + self._local_tail
        )
        cand = Candidate(
            rule="local_gpu",
            target="local",
            feasible=True,
            why=why,
            gpu=name,
            minutes=d.minutes_local_gpu,
            estimate_usd=self._energy(self._local_rate, d.minutes_local_gpu),
        )
        return _Option(cand, index)

    def _remote(self, job: _Job, only: str | None = None) -> _Option:
        if self._remote_no is not None:
            return self._remote_no
        spec, d = job.spec, job.d
        found = self._quotes(job)
        if only is not None:
            found = [q for q in found if q.provider_id == only]
            if not found:
                skipped = self.table.skipped(d.vram_demand_gb)
                gone = [s for s in skipped if s.startswith(f"{only}:")]
                return _no(
                    "remote_cheapest",
                    "remote",
                    gone[0] if gone else f"{only}: not a registered provider",
                )
        if not found:
            skipped = self.table.skipped(d.vram_demand_gb)
            need = f"{d.vram_demand_gb:.2f} GB + {self._headroom}"
            why = f"no provider fits {need} ({'; '.join(skipped) or 'none registered'})"
            return _no("remote_cheapest", "remote", why)
        best, max_cost = found[0], spec.max_cost_usd
        if not (max_cost is None or best.total_usd <= max_cost):
            why = (
                f"cheapest fitting provider {best.provider_id} costs ~${best.total_usd:.4f}"
                f" > max cost ${max_cost:g}"
            )
            return _no("remote_cheapest", "remote", why)
        gpu, minutes = best.offer.gpu, best.minutes_total
        why = (
            f"cheapest fitting provider {best.provider_id}: {gpu} at"
            f" ${round(best.offer.rate, 6):.3f}/h, est. {minutes:.2f} min"
            f" ~${best.total_usd:.4f} {self._queue}"
            f"{'' if max_cost is None else f', max cost ${max_cost:g}'})"
        )
        cand = Candidate(
            rule="remote_cheapest",
            target="remote",
            feasible=True,
            why=why,
            provider_id=best.provider_id,
            gpu=gpu,
            minutes=minutes,
            estimate_usd=round(best.total_usd, self._digits),
        )
        return _Option(cand)

    def _cpu_never(self, spec: JobSpec, d: JobDerived) -> list[str]:
        """Why the CPU can never take the job (nothing that frees changes these)."""
        rule = self.config.rules.cpu
        problems: list[str] = []
        if not rule.enabled:
            problems.append("rule disabled in config")
        if spec.kind not in rule.allowed_kinds:
            problems.append(f"{spec.kind} jobs are not allowed on the CPU")
        if d.megapixels_total > rule.max_megapixels:
            problems.append(f"too big: {d.megapixels_total:.2f} MP > {self._max_mp} MP")
        if d.minutes_cpu > rule.max_minutes:
            problems.append(f"too slow: est. {d.minutes_cpu:.1f} min > {self._max_min} min")
        return problems

    def _cpu(self, spec: JobSpec, d: JobDerived) -> _Option:
        rule = self.config.rules.cpu
        ram = self._ram
        ram_need = d.vram_demand_gb * rule.ram_factor
        problems = self._cpu_never(spec, d)
        if ram is not None and ram < ram_need:
            problems.append(f"RAM {ram:.1f} GB available < {ram_need:.1f} GB needed")
        if problems:
            return _no("cpu_small_job", "cpu", "; ".join(problems))
        why = (
            f"small enough: {d.megapixels_total:.2f} MP <= {self._max_mp} MP,"
            f" est. {d.minutes_cpu:.1f} min <= {self._max_min} min"
            + ("" if ram is None else f", RAM {ram:.1f} GB >= {ram_need:.1f} GB")
        )
        cand = Candidate(
            rule="cpu_small_job",
            target="cpu",
            feasible=True,
            why=why,
            minutes=d.minutes_cpu,
            estimate_usd=self._energy(self._cpu_rate, d.minutes_cpu),
        )
        return _Option(cand)

    def _option(self, job: _Job, i: int) -> _Option:
        """Rule ``i`` of local GPU, remote, CPU (computed once per job)."""
        opt = job.options[i]
        if opt is None:
            if i == 0:
                opt = self._local(job.d)
            elif i == 1:
                opt = self._remote(job)
            else:
                opt = self._cpu(job.spec, job.d)
            job.options[i] = opt
        return opt

    def _preferred(self, job: _Job, prefer: str) -> _Option:
        match prefer:
            case "local":
                return self._option(job, 0)
            case "remote":
                return self._option(job, 1)
            case "cpu":
                return self._option(job, 2)
            case "wait":
                return _WAIT_PREFERRED
        return self._remote(job, only=prefer)

    def decide(self, spec: JobSpec, details: bool | None = None) -> Decision:
        """Where ``spec`` should run; ``details`` (default: the spec's ``debug``) adds
        the details block. Options after the one chosen are weighed only for details.
        When none is feasible: ``infeasible`` if no target can ever run the job
        (:meth:`_never`), else wait for the local GPU."""
        d = derive(spec, self.config)
        job = _Job(spec, d)
        lines = [_summary(spec, d)]
        chosen: _Option | None = None
        rule: RuleName = "wait_for_local_gpu"
        if spec.prefer is not None:
            pref = self._preferred(job, spec.prefer)
            verdict = "honoured" if pref.candidate.feasible else "not feasible"
            lines.append(f"Preferred target {spec.prefer} {verdict}: {pref.candidate.why}.")
            if pref.candidate.feasible:
                chosen, rule = pref, "preferred_target"
        if chosen is None:
            for i in range(3):
                opt = self._option(job, i)
                lines.append(f"{_LABEL[opt.candidate.rule]}: {opt.candidate.why}.")
                if opt.candidate.feasible:
                    chosen, rule = opt, opt.candidate.rule
                    break
        if not self.remote_on and not any(x.startswith("Remote:") for x in lines):
            lines.append(f"Remote: not considered, {ENABLE_COMPUTE} is off.")
        if chosen is None:
            never = self._never(job)
            if never is None:
                lines.append("Waiting for the local GPU.")
                chosen = _Option(self._wait(d))
            else:  # no minutes, no price: it will not run
                lines.append(f"Infeasible: no target can ever run this job ({never}).")
                chosen = _no("infeasible", "infeasible", never)
            rule = chosen.candidate.rule
        c = chosen.candidate
        return Decision(
            target=c.target,
            rule=rule,
            reason=" ".join(lines),
            vram_demand_gb=d.vram_demand_gb,
            remote_considered=self.remote_on,
            provider_id=c.provider_id,
            gpu=c.gpu,
            gpu_index=chosen.gpu_index,
            estimated_minutes=c.minutes,
            estimate_usd=c.estimate_usd,
            details=self._details(job) if (spec.debug if details is None else details) else None,
        )

    def _never(self, job: _Job) -> str | None:
        """Why no target can ever run the job, one clause per target with the
        numbers; None when one could once something frees (VRAM, RAM, the remote
        queue) or changes at run time (a flag, a provider's enabled switch).

        Local: a sample lists no GPU, or every GPU's total VRAM is below the need
        (unknown before the first sample or for a GPU whose total NVML could not
        read). Remote: its rule is disabled, or no registered provider, enabled or
        not, has an offer that fits, or the cheapest that fits costs more than the
        spec's ``max_cost_usd``. CPU: a reason that does not depend on free RAM."""
        d = job.d
        local = self._local_never(d)
        cpu = self._cpu_never(job.spec, d)
        if local is None or not cpu:
            return None
        remote = self._remote_never(job)
        if remote is None:
            return None
        return f"local GPU: {local}; remote: {remote}; CPU: {'; '.join(cpu)}"

    def _local_never(self, d: JobDerived) -> str | None:
        rule = self.config.rules.local_gpu
        if not rule.enabled:
            return "rule disabled in config"
        t = self.context.telemetry
        if t.sample_id == _NO_SAMPLE:
            return None
        if not t.gpus:
            return f"no GPU ({t.reason or 'none reported'})"
        totals = [g.total_gb for g in t.gpus]
        if any(total is None for total in totals):
            return None
        need = d.vram_demand_gb * self._local_factor + rule.headroom_gb
        largest = max(total for total in totals if total is not None)
        if largest >= need:
            return None
        return f"largest GPU has {largest:.2f} GB in all < {need:.2f} GB needed"

    def _remote_never(self, job: _Job) -> str | None:
        if not self.config.rules.remote.enabled:
            return "rule disabled in config"
        d, max_cost = job.d, job.spec.max_cost_usd
        providers = self.context.registry.providers.values()
        if not providers:
            return "no provider registered"
        need = d.vram_demand_gb + self.config.rules.remote.headroom_gb
        largest = max(g.vram_gb for p in providers for g in p.gpus)
        if largest < need:
            return (
                f"largest offer of any provider {largest:g} GB < {d.vram_demand_gb:.2f} GB"
                f" + {self._headroom}"
            )
        if max_cost is None:
            return None
        found = self.table.quotes(
            d.minutes_reference_gpu, True, d.vram_demand_gb, d.transfer_gb, include_disabled=True
        )
        if found and found[0].total_usd > max_cost:
            best = found[0]
            return (
                f"cheapest fitting offer ({best.provider_id}, {best.offer.gpu}) costs"
                f" ~${best.total_usd:.4f} > max cost ${max_cost:g}"
            )
        return None

    def _wait(self, d: JobDerived) -> Candidate:
        return Candidate(
            rule="wait_for_local_gpu",
            target="wait",
            feasible=True,
            why="no rule fired",
            minutes=d.minutes_local_gpu,
            estimate_usd=self._energy(self._local_rate, d.minutes_local_gpu),
        )

    def _details(self, job: _Job) -> DecisionDetails:
        minutes = {q.provider_id: q.minutes_total for q in self._quotes(job)}
        return DecisionDetails(
            thresholds=self.config.rules,
            derived=msgspec.structs.replace(job.d, minutes_remote=minutes),
            context=snapshot(self.context),
            candidates=[self._option(job, i).candidate for i in range(3)],
            config_digest=config_digest(self.config),
        )


def _summary(spec: JobSpec, d: JobDerived) -> str:
    if spec.kind in ("image", "video"):
        frames = f" x {d.frames} frames" if spec.kind == "video" else ""
        what = f"{spec.kind} {d.width}x{d.height} ({d.pixels:,} px) x batch {d.batch}{frames}"
    else:
        what = f"{spec.kind} job{f' ({spec.model})' if spec.model else ''}"
    return f"{what}: VRAM demand {d.vram_demand_gb:.2f} GB ({d.vram_formula})."


def decide(spec: JobSpec, context: DecisionContext, config: AdvisorConfig) -> Decision:
    """Where ``spec`` should run given ``context``; pure and deterministic."""
    return Decider(context, config).decide(spec)


def snapshot(context: DecisionContext) -> ContextSnapshot:
    t = context.telemetry
    return ContextSnapshot(
        telemetry_sample_id=t.sample_id,
        telemetry_ts=t.ts,
        telemetry_reason=t.reason,
        gpus_free_gb=[None if g.free_gb is None else round(g.free_gb, 4) for g in t.gpus],
        ram_available_gb=(
            None if t.host.ram_available_gb is None else round(t.host.ram_available_gb, 4)
        ),
        flags=dict(sorted({ENABLE_COMPUTE: False, **context.flags}.items())),
        registry_version=context.registry.version,
        remote_queue_depth=context.remote_queue_depth,
    )


def advise(
    job_id: str, spec: JobSpec, context: DecisionContext, config: AdvisorConfig
) -> AdviceRecord:
    """Decide and keep the inputs: the payload to publish as ``job.advised``."""
    return AdviceRecord(
        job_id=job_id,
        spec=as_event_spec(spec),
        context=context,
        decision=decide(spec, context, config),
        config_digest=config_digest(config),
    )
