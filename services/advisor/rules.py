"""The decision: local GPU, remote provider, CPU, or wait. A pure function.

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
4. ``wait_for_local_gpu``: otherwise, wait for the local GPU.

The reason names the rule that fired and, in order, why each earlier rule did
not, with the numbers used. With the flag off it says remote was not
considered because of the flag.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from schemas.advisor import (
    AdvisorJobSpec,
    Candidate,
    ContextSnapshot,
    CostEstimate,
    Decision,
    DecisionDetails,
    JobDerived,
    RuleName,
)
from schemas.flags import ENABLE_COMPUTE
from services.advisor.config import AdvisorConfig, config_digest
from services.advisor.decision import AdviceRecord, DecisionContext
from services.advisor.jobspec import as_event_spec
from services.advisor.pricing import Work, compare_providers, energy_estimate, remote_enabled
from services.advisor.vram import derive


class _Option(NamedTuple):
    candidate: Candidate
    gpu_index: int | None = None


def _local(d: JobDerived, ctx: DecisionContext, config: AdvisorConfig, work: Work) -> _Option:
    rule = config.rules.local_gpu
    need = d.vram_demand_gb * (1 + rule.headroom_fraction) + rule.headroom_gb
    est = energy_estimate("local", work, config)

    def no(why: str) -> _Option:
        return _Option(Candidate(rule="local_gpu", target="local", feasible=False, why=why))

    if not rule.enabled:
        return no("rule disabled in config")
    gpus = ctx.telemetry.gpus
    if not gpus:
        return no(f"no GPU ({ctx.telemetry.reason or 'none reported'})")
    known = [(g.free_gb, g) for g in gpus if g.free_gb is not None]
    if not known:
        return no(f"free VRAM unknown on all {len(gpus)} GPU(s)")
    free, best = max(known, key=lambda fg: (fg[0], -fg[1].index))
    if free < need:
        return no(f"best free VRAM {free:.2f} GB (GPU {best.index}) < {need:.2f} GB needed")
    why = (
        f"GPU {best.index} ({best.name or 'unnamed'}) has {free:.2f} GB free >= {need:.2f} GB"
        f" needed ({d.vram_demand_gb:.2f} GB x {1 + rule.headroom_fraction:g}"
        f" + {rule.headroom_gb:g} GB headroom)"
    )
    cand = Candidate(
        rule="local_gpu",
        target="local",
        feasible=True,
        why=why,
        gpu=best.name,
        minutes=d.minutes_local_gpu,
        estimate_usd=est.estimate,
    )
    return _Option(cand, best.index)


def _remote(
    spec: AdvisorJobSpec,
    d: JobDerived,
    ctx: DecisionContext,
    config: AdvisorConfig,
    found: list[CostEstimate],
    skipped: list[str],
    only: str | None = None,
) -> _Option:
    rule = config.rules.remote
    depth = ctx.remote_queue_depth

    def no(why: str) -> _Option:
        return _Option(Candidate(rule="remote_cheapest", target="remote", feasible=False, why=why))

    if not rule.enabled:
        return no("rule disabled in config")
    if not remote_enabled(ctx.flags):
        return no(f"not considered, {ENABLE_COMPUTE} is off")
    if depth >= rule.queue_saturated_at:
        return no(f"queue saturated: depth {depth} >= {rule.queue_saturated_at}")
    if only is not None:
        found = [e for e in found if e.provider_id == only]
        if not found:
            gone = [s for s in skipped if s.startswith(f"{only}:")]
            return no(gone[0] if gone else f"{only}: not a registered provider")
    if not found:
        need = f"{d.vram_demand_gb:.2f} GB + {rule.headroom_gb:g} GB headroom"
        return no(f"no provider fits {need} ({'; '.join(skipped) or 'none registered'})")
    affordable = [e for e in found if spec.max_cost_usd is None or e.total_usd <= spec.max_cost_usd]
    if not affordable:
        return no(
            f"cheapest fitting provider {found[0].provider_id} costs ~${found[0].total_usd:.4f}"
            f" > max cost ${spec.max_cost_usd:g}"
        )
    best = affordable[0]
    why = (
        f"cheapest fitting provider {best.provider_id}: {best.gpu} at"
        f" ${best.breakdown.rate_usd_per_hour:.3f}/h, est. {best.minutes_total:.2f} min"
        f" ~${best.total_usd:.4f} (queue depth {depth} < {rule.queue_saturated_at}"
        f"{'' if spec.max_cost_usd is None else f', max cost ${spec.max_cost_usd:g}'})"
    )
    cand = Candidate(
        rule="remote_cheapest",
        target="remote",
        feasible=True,
        why=why,
        provider_id=best.provider_id,
        gpu=best.gpu,
        minutes=best.minutes_total,
        estimate_usd=best.estimate,
    )
    return _Option(cand)


def _cpu(
    spec: AdvisorJobSpec, d: JobDerived, ctx: DecisionContext, config: AdvisorConfig, work: Work
) -> _Option:
    rule = config.rules.cpu
    ram = ctx.telemetry.host.ram_available_gb
    ram_need = d.vram_demand_gb * rule.ram_factor
    problems: list[str] = []
    if not rule.enabled:
        problems.append("rule disabled in config")
    if spec.kind not in rule.allowed_kinds:
        problems.append(f"{spec.kind} jobs are not allowed on the CPU")
    if d.megapixels_total > rule.max_megapixels:
        problems.append(f"too big: {d.megapixels_total:.2f} MP > {rule.max_megapixels:g} MP")
    if d.minutes_cpu > rule.max_minutes:
        problems.append(f"too slow: est. {d.minutes_cpu:.1f} min > {rule.max_minutes:g} min")
    if ram is not None and ram < ram_need:
        problems.append(f"RAM {ram:.1f} GB available < {ram_need:.1f} GB needed")
    if problems:
        why = "; ".join(problems)
        return _Option(Candidate(rule="cpu_small_job", target="cpu", feasible=False, why=why))
    why = (
        f"small enough: {d.megapixels_total:.2f} MP <= {rule.max_megapixels:g} MP,"
        f" est. {d.minutes_cpu:.1f} min <= {rule.max_minutes:g} min"
        + ("" if ram is None else f", RAM {ram:.1f} GB >= {ram_need:.1f} GB")
    )
    est = energy_estimate("cpu", work, config)
    cand = Candidate(
        rule="cpu_small_job",
        target="cpu",
        feasible=True,
        why=why,
        minutes=d.minutes_cpu,
        estimate_usd=est.estimate,
    )
    return _Option(cand)


def _summary(spec: AdvisorJobSpec, d: JobDerived) -> str:
    if spec.kind in ("image", "video"):
        frames = f" x {d.frames} frames" if spec.kind == "video" else ""
        what = f"{spec.kind} {d.width}x{d.height} ({d.pixels:,} px) x batch {d.batch}{frames}"
    else:
        what = f"{spec.kind} job{f' ({spec.model})' if spec.model else ''}"
    return f"{what}: VRAM demand {d.vram_demand_gb:.2f} GB ({d.vram_formula})."


_LABEL: dict[RuleName, str] = {
    "local_gpu": "Local GPU",
    "remote_cheapest": "Remote",
    "cpu_small_job": "CPU",
    "preferred_target": "Preferred target",
    "wait_for_local_gpu": "Wait",
}


def decide(spec: AdvisorJobSpec, context: DecisionContext, config: AdvisorConfig) -> Decision:
    """Where ``spec`` should run given ``context``; pure and deterministic."""
    d = derive(spec, config)
    work = Work.of_job(d)
    found, skipped = compare_providers(
        work, context.registry, config, remote_enabled(context.flags)
    )
    d = msgspec.structs.replace(
        d, minutes_remote={e.provider_id or "": e.minutes_total for e in found}
    )
    options = (
        _local(d, context, config, work),
        _remote(spec, d, context, config, found, skipped),
        _cpu(spec, d, context, config, work),
    )
    pref = None
    if spec.prefer is not None:
        pref = _preferred(spec, d, context, config, found, skipped, options)
    chosen, rule, lines = _choose(spec, d, context, options, pref)
    if chosen is None:
        lines.append("Waiting for the local GPU.")
        chosen = _Option(_wait(d, work, config))
    c = chosen.candidate
    details = None
    if spec.debug:
        details = DecisionDetails(
            thresholds=config.rules,
            derived=d,
            context=snapshot(context),
            candidates=[o.candidate for o in options],
            config_digest=config_digest(config),
        )
    return Decision(
        target=c.target,
        rule=rule,
        reason=" ".join(lines),
        vram_demand_gb=d.vram_demand_gb,
        remote_considered=remote_enabled(context.flags),
        provider_id=c.provider_id,
        gpu=c.gpu,
        gpu_index=chosen.gpu_index,
        estimated_minutes=c.minutes,
        estimate_usd=c.estimate_usd,
        details=details,
    )


def _choose(
    spec: AdvisorJobSpec,
    d: JobDerived,
    context: DecisionContext,
    options: tuple[_Option, _Option, _Option],
    pref: _Option | None,
) -> tuple[_Option | None, RuleName, list[str]]:
    """The preferred target if feasible, else the first feasible rule; and the reason lines."""
    lines = [_summary(spec, d)]
    chosen: _Option | None = None
    rule: RuleName = "wait_for_local_gpu"
    if pref is not None:
        verdict = "honoured" if pref.candidate.feasible else "not feasible"
        lines.append(f"Preferred target {spec.prefer} {verdict}: {pref.candidate.why}.")
        if pref.candidate.feasible:
            chosen, rule = pref, "preferred_target"
    if chosen is None:
        for opt in options:
            lines.append(f"{_LABEL[opt.candidate.rule]}: {opt.candidate.why}.")
            if opt.candidate.feasible:
                chosen, rule = opt, opt.candidate.rule
                break
    if not remote_enabled(context.flags) and not any(x.startswith("Remote:") for x in lines):
        lines.append(f"Remote: not considered, {ENABLE_COMPUTE} is off.")
    return chosen, rule, lines


def _wait(d: JobDerived, work: Work, config: AdvisorConfig) -> Candidate:
    return Candidate(
        rule="wait_for_local_gpu",
        target="wait",
        feasible=True,
        why="no rule fired",
        minutes=d.minutes_local_gpu,
        estimate_usd=energy_estimate("local", work, config).estimate,
    )


def _preferred(
    spec: AdvisorJobSpec,
    d: JobDerived,
    ctx: DecisionContext,
    config: AdvisorConfig,
    found: list[CostEstimate],
    skipped: list[str],
    options: tuple[_Option, _Option, _Option],
) -> _Option:
    local, remote, cpu = options
    prefer = spec.prefer or ""
    match prefer:
        case "local":
            return local
        case "cpu":
            return cpu
        case "remote":
            return remote
        case "wait":
            return _Option(
                Candidate(
                    rule="preferred_target",
                    target="wait",
                    feasible=False,
                    why="waiting is not a target one can prefer",
                )
            )
    return _remote(spec, d, ctx, config, found, skipped, only=prefer)


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
    job_id: str, spec: AdvisorJobSpec, context: DecisionContext, config: AdvisorConfig
) -> AdviceRecord:
    """Decide and keep the inputs: the payload to publish as ``job.advised``."""
    return AdviceRecord(
        job_id=job_id,
        spec=as_event_spec(spec),
        context=context,
        decision=decide(spec, context, config),
        config_digest=config_digest(config),
    )
