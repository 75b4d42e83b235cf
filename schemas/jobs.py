"""Job lifecycle events: what the job table projection folds.

``job.submitted`` carries the validated job spec; the advisor answers with
``job.advised``; a runner reports ``job.started`` and a terminal event.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from schemas.envelope import event_type

JobKind = Literal["image", "video", "llm", "speech", "other"]
Target = Literal["local", "cpu", "remote", "wait", "rejected"]

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a client asks to run. Units: pixels, frames, GB of VRAM, USD.

    Lenient about unknown fields, as every message between services is; HTTP
    bodies decode as :class:`JobSpecBody`, which is strict.
    """

    kind: JobKind = "image"
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    batch: PositiveInt = 1
    frames: PositiveInt = 1
    steps: PositiveInt | None = None
    model: str | None = None
    vram_gb: NonNegative | None = None
    max_cost_usd: NonNegative | None = None
    prefer: str | None = None
    debug: bool = False


class JobSpecBody(JobSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job spec as a client sends it: an unknown field is an error."""


class JobSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    spec: JobSpec


class JobAdvised(msgspec.Struct, frozen=True, kw_only=True):
    """The advisor's decision. ``target`` is local, cpu, remote or wait;
    ``provider`` is set when remote. ``inputs`` records what the decision used."""

    target: str
    rule: str
    reason: str
    provider: str | None = None
    estimate_usd: float | None = None
    inputs: dict[str, Any] = {}


class JobStarted(msgspec.Struct, frozen=True, kw_only=True):
    target: str
    provider: str | None = None


class JobSucceeded(msgspec.Struct, frozen=True, kw_only=True):
    artifacts: list[str] = []
    cost_usd: float | None = None


class JobFailed(msgspec.Struct, frozen=True, kw_only=True):
    error: str


class JobCancelled(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""


JobSubmittedEvent = event_type("job.submitted", JobSubmitted, "A client asked to run a job.")
JobAdvisedEvent = event_type("job.advised", JobAdvised, "The advisor decided where a job runs.")
JobStartedEvent = event_type("job.started", JobStarted, "A job began running on its target.")
JobSucceededEvent = event_type("job.succeeded", JobSucceeded, "A job finished successfully.")
JobFailedEvent = event_type("job.failed", JobFailed, "A job ended with an error.")
JobCancelledEvent = event_type("job.cancelled", JobCancelled, "A job was cancelled.")
