"""The decision's inputs and outputs, as Structs that travel in events.

:class:`DecisionContext` holds everything a decision reads besides the job
spec and the config: the telemetry sample, the flags, the provider registry
snapshot and the remote queue depth. :class:`AdviceRecord` (the proposed
``job.advised`` payload) keeps spec, context and decision together, so a
replay can re-run ``rules.decide`` on the recorded inputs and compare.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from services.advisor.config import RulesConfig
from services.advisor.jobspec import JobSpec
from services.advisor.registry import RegistryState
from services.advisor.telemetry import TelemetrySample
from services.advisor.vram import JobDerived

Target = Literal["local", "cpu", "remote", "wait"]
RuleName = Literal[
    "preferred_target", "local_gpu", "remote_cheapest", "cpu_small_job", "wait_for_local_gpu"
]


class DecisionContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the advisor knew when it decided (built from events, never read live).

    ``flags`` are feature flags by name (``features.enable_compute``);
    ``remote_queue_depth`` counts jobs waiting for remote compute.
    """

    telemetry: TelemetrySample
    flags: dict[str, bool] = {}
    registry: RegistryState = RegistryState()
    remote_queue_depth: Annotated[int, msgspec.Meta(ge=0)] = 0


class ContextSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The part of the context a reader needs to understand a decision."""

    telemetry_sample_id: str
    telemetry_ts: float
    telemetry_reason: str | None
    gpus_free_gb: list[float | None]
    ram_available_gb: float | None
    flags: dict[str, bool]
    registry_version: int
    remote_queue_depth: int


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One option the rules weighed, feasible or not, and why."""

    rule: RuleName
    target: Target
    feasible: bool
    why: str
    provider_id: str | None = None
    gpu: str | None = None
    minutes: float | None = None
    estimate_usd: float | None = None


class DecisionDetails(msgspec.Struct, frozen=True, kw_only=True):
    thresholds: RulesConfig
    derived: JobDerived
    context: ContextSnapshot
    candidates: list[Candidate]
    config_digest: str


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Where the job goes, the rule that fired, and why with the numbers used.

    ``provider_id``/``gpu`` name the rented GPU when remote; ``gpu_index`` the
    local GPU. ``estimated_minutes`` includes a remote cold start;
    ``estimate_usd`` is the rounded cost (energy for local/CPU/wait).
    ``details`` is set when the spec asked for ``debug``.
    """

    target: Target
    rule: RuleName
    reason: str
    vram_demand_gb: float
    remote_considered: bool
    provider_id: str | None = None
    gpu: str | None = None
    gpu_index: int | None = None
    estimated_minutes: float | None = None
    estimate_usd: float | None = None
    details: DecisionDetails | None = None

    @property
    def placement(self) -> tuple[str, str | None, str]:
        """(target, provider, rule): two decisions differ when this differs."""
        return (self.target, self.provider_id, self.rule)


class AdviceRecord(msgspec.Struct, frozen=True, kw_only=True, tag="job.advised"):
    """A decision with the inputs it used: the proposed ``job.advised`` payload.

    ``config_digest`` identifies the advisor config (``config.config_digest``).
    """

    job_id: str
    spec: JobSpec
    context: DecisionContext
    decision: Decision
    config_digest: str
