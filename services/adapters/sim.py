"""Sim mode: a seeded preview of how a job would go at a provider.

``simulate(provider, job, seed)`` returns a ``SimTranscript``: the phases ``queued``,
``cold_start`` (when no warm worker is drawn), ``running``, ``progress`` (25/50/75 %),
then ``done`` or ``failed``, each at a time in integer milliseconds from submit, plus
the ``decision`` (outcome, whether a cold start happened, total time, and why).

Every draw comes from one ``random.Random(seed)`` in a fixed order, and times are
integers, so the same provider, job, seed and profile give a byte-identical
``encode_transcript()``; another seed can differ. Nothing here reads a clock or the
network.

The job's size is ``job.input["steps"]`` when it is a positive int (diffusion steps,
frames, ...), else ``DEFAULT_UNITS``; more than ``SIM_MAX_UNITS`` steps is refused.
Every profile is checked against its bounds before any draw, so with those bounds every
time is a finite integer below 2**53 ms: no value a profile may hold can overflow.

``PROFILES`` are illustrative defaults shaped after each provider's documented behaviour
(HF scale-from-zero takes minutes, Modal containers start in seconds), not measurements;
pass ``profile=`` to use your own.
"""

from __future__ import annotations

import math
import random
from typing import Final

import msgspec

from schemas.adapters import (
    PROVIDERS,
    SIM_MAX_UNITS,
    ProviderJob,
    ProviderProfile,
    SimDecision,
    SimEvent,
    SimPhase,
    SimTranscript,
)

from .errors import InvalidJobError, UnknownProviderError

__all__ = [
    "DEFAULT_UNITS",
    "PROFILES",
    "SIM_MAX_UNITS",
    "ProviderProfile",
    "SimDecision",
    "SimEvent",
    "SimPhase",
    "SimTranscript",
    "encode_transcript",
    "simulate",
]

DEFAULT_UNITS: Final = 20

PROFILES: Final[dict[str, ProviderProfile]] = {
    "runpod": ProviderProfile(
        queue_s=(0.2, 3.0),
        cold_start_s=(8.0, 40.0),
        warm_probability=0.4,
        failure_rate=0.03,
        units_per_s=12.0,
    ),
    "huggingface": ProviderProfile(
        queue_s=(0.05, 0.5),
        cold_start_s=(60.0, 300.0),
        warm_probability=0.5,
        failure_rate=0.02,
        units_per_s=10.0,
    ),
    "replicate": ProviderProfile(
        queue_s=(0.5, 5.0),
        cold_start_s=(5.0, 60.0),
        warm_probability=0.6,
        failure_rate=0.04,
        units_per_s=9.0,
    ),
    "modal": ProviderProfile(
        queue_s=(0.1, 1.0),
        cold_start_s=(2.0, 20.0),
        warm_probability=0.5,
        failure_rate=0.02,
        units_per_s=11.0,
    ),
}


def encode_transcript(transcript: SimTranscript) -> bytes:
    """Canonical JSON bytes of ``transcript`` (the form the byte-identity promise is about)."""
    return msgspec.json.encode(transcript)


def simulate(
    provider: str, job: ProviderJob, seed: int, *, profile: ProviderProfile | None = None
) -> SimTranscript:
    """A seeded transcript of ``job`` at ``provider``. Raises ``UnknownProviderError``
    for a provider we do not know and ``InvalidJobError`` for an impossible profile."""
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise UnknownProviderError(provider, "simulate", f"unknown provider (known: {known})")
    chosen = profile or PROFILES[provider]
    problems = chosen.problems()
    if problems:
        raise InvalidJobError(provider, "simulate", "bad profile: " + "; ".join(problems))
    units = _units(provider, job)
    rng = random.Random(seed)
    events = [SimEvent(at_ms=0, phase="queued", detail="submitted; waiting for a worker")]
    now = _ms(provider, rng.uniform(*chosen.queue_s))
    cold = rng.random() >= chosen.warm_probability
    if cold:
        detail = "no warm worker; starting one"
        events.append(SimEvent(at_ms=now, phase="cold_start", detail=detail))
        now += _ms(provider, rng.uniform(*chosen.cold_start_s))
    events.append(SimEvent(at_ms=now, phase="running", detail=f"worker took {units} units"))
    run_ms = _ms(provider, units / chosen.units_per_s * rng.uniform(0.85, 1.15))
    fails = rng.random() < chosen.failure_rate
    fail_fraction = rng.uniform(0.05, 0.95)
    end_fraction = fail_fraction if fails else 1.0
    for pct in (25, 50, 75):
        if pct / 100 < end_fraction:
            at = now + round(run_ms * pct / 100)
            events.append(
                SimEvent(at_ms=at, phase="progress", detail=f"{pct}% done", progress_pct=pct)
            )
    end = now + round(run_ms * end_fraction)
    if fails:
        pct = int(fail_fraction * 100)
        events.append(SimEvent(at_ms=end, phase="failed", detail=f"worker error at {pct}%"))
        reason = f"failed after {end} ms (drawn failure, rate {chosen.failure_rate:g})"
    else:
        events.append(SimEvent(at_ms=end, phase="done", detail="output ready"))
        reason = f"done in {end} ms" + (" including a cold start" if cold else " on a warm worker")
    decision = SimDecision(
        outcome="failed" if fails else "done", cold_start=cold, total_ms=end, reason=reason
    )
    return SimTranscript(
        provider=provider,
        seed=seed,
        job_id=job.job_id,
        units=units,
        profile=chosen,
        events=events,
        decision=decision,
    )


def _units(provider: str, job: ProviderJob) -> int:
    """The job's size: the provider input's ``steps``, else the job spec's."""
    steps = job.input.get("steps", job.steps)
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        if steps > SIM_MAX_UNITS:
            reason = f"job.input.steps must be at most {SIM_MAX_UNITS}, got {steps}"
            raise InvalidJobError(provider, "simulate", reason)
        return steps
    return DEFAULT_UNITS


def _ms(provider: str, seconds: float) -> int:
    """``seconds`` as whole milliseconds. The profile's bounds keep this finite; the check
    is the last line of defence, so a broken bound is a 400, never an OverflowError."""
    ms = seconds * 1000
    if not math.isfinite(ms):
        raise InvalidJobError(provider, "simulate", f"a drawn time is not finite ({seconds})")
    return round(ms)
