"""Derived job attributes: pixels, VRAM demand, run time per target.

Pure functions of a job spec and the config; the formulas and their constants
are documented in ``services/advisor/config.py`` (``VramConfig``,
``SpeedConfig``). Every derived figure is rounded to 4 decimals so a recorded
decision prints and compares the same everywhere.

Run time is first computed on the reference GPU (relative speed 1.0); a target
divides it by its own speed: the local GPU by ``speed.local_relative_speed``,
the CPU multiplies by ``speed.cpu_slowdown.<kind>``, a provider GPU divides by
``relative_speed * throughput_factor`` and adds its cold start.
"""

from __future__ import annotations

from schemas.advisor import JobDerived, VramSource
from schemas.jobs import JobSpec
from schemas.providers import GpuOffer, ProviderProfile
from services.advisor.config import AdvisorConfig
from services.advisor.jobspec import Shape, shape


def _r(x: float) -> float:
    return round(x, 4)


def vram_demand(spec: JobSpec, s: Shape, config: AdvisorConfig) -> tuple[float, VramSource, str]:
    """VRAM demand in GB, where it came from, and the formula with its numbers."""
    if spec.vram_gb is not None:
        return _r(spec.vram_gb), "hint", f"explicit hint {spec.vram_gb:g} GB"
    v = config.vram
    known = v.models_gb.get(spec.model.lower()) if spec.model else None
    if spec.kind == "llm":
        if known is not None:
            weights, how = known, f"{known:g} GB weights of {spec.model}"
        else:
            params = s.params_b or v.llm_default_params_b
            weights = params * v.llm_bytes_per_param
            how = f"{params:g}B params x {v.llm_bytes_per_param:g} B/param"
        gb = weights + v.llm_overhead_gb
        return (
            _r(gb),
            "model" if known is not None else "formula",
            (f"{how} + {v.llm_overhead_gb:g} GB overhead = {gb:.2f} GB"),
        )
    per_kind = {"image": v.image, "video": v.video, "speech": v.speech, "other": v.other}
    k = per_kind[spec.kind]
    base = known if known is not None else k.base_gb
    base_how = f"{base:g} GB {spec.model if known is not None else spec.kind + ' base'}"
    gb = base + k.per_megapixel_gb * s.megapixels_total
    if k.per_megapixel_gb == 0:
        return _r(gb), "model" if known is not None else "formula", f"{base_how} = {gb:.2f} GB"
    return (
        _r(gb),
        "model" if known is not None else "formula",
        (
            f"{base_how} + {k.per_megapixel_gb:g} GB/MP x {s.megapixels_total:.4g} MP"
            f" ({s.width}x{s.height} x batch {spec.batch}"
            f"{f' x {spec.frames} frames' if spec.kind == 'video' else ''}) = {gb:.2f} GB"
        ),
    )


def reference_minutes(spec: JobSpec, s: Shape, config: AdvisorConfig) -> float:
    """Run time on the reference GPU, in minutes (formulas in ``SpeedConfig``)."""
    sp = config.speed
    match spec.kind:
        case "image":
            seconds = sp.image_s_per_megapixel_step * s.megapixels_total * s.steps
        case "video":
            seconds = sp.video_s_per_megapixel_step * s.megapixels_total * s.steps
        case "llm":
            params = s.params_b or config.vram.llm_default_params_b
            seconds = sp.llm_s_per_token_per_b * params * s.tokens
        case "speech":
            seconds = sp.speech_realtime_factor * s.audio_seconds
        case _:
            return _r(sp.other_minutes)
    return _r((sp.overhead_s + seconds) / 60)


def transfer_gb(spec: JobSpec, s: Shape, config: AdvisorConfig) -> float:
    p = config.pricing
    return _r(p.transfer_base_gb + p.transfer_gb_per_megapixel * s.megapixels_total)


def derive(spec: JobSpec, config: AdvisorConfig) -> JobDerived:
    s = shape(spec, config)
    gb, source, formula = vram_demand(spec, s, config)
    ref = reference_minutes(spec, s, config)
    slowdown = getattr(config.speed.cpu_slowdown, spec.kind)
    return JobDerived(
        kind=spec.kind,
        width=s.width,
        height=s.height,
        pixels=s.pixels,
        batch=spec.batch,
        frames=spec.frames,
        megapixels_total=_r(s.megapixels_total),
        steps=s.steps,
        tokens=s.tokens,
        audio_seconds=s.audio_seconds,
        params_b=s.params_b,
        vram_demand_gb=gb,
        vram_source=source,
        vram_formula=formula,
        transfer_gb=transfer_gb(spec, s, config),
        minutes_reference_gpu=ref,
        minutes_local_gpu=_r(ref / config.speed.local_relative_speed),
        minutes_cpu=_r(ref * slowdown),
    )


def remote_run_minutes(reference: float, profile: ProviderProfile, offer: GpuOffer) -> float:
    """Minutes of GPU work on ``offer`` at ``profile``, cold start excluded."""
    return _r(reference / (offer.relative_speed * profile.hardware.throughput_factor))
