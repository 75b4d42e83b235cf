"""Jobs: the one job spec every service takes, and the job lifecycle events.

:class:`JobSpec` is what a client asks to run. It is the ``spec`` of
``job.submitted``, the body of the advisor's advise and cost routes (and of the
scheduler's ``POST /api/jobs``), and what the advisor decides on; a job handed
to a provider is this spec plus the provider's input
(``schemas.adapters.ProviderJob``). Where a person types a spec (an HTTP body)
it is decoded as ``schemas.strict.strict(JobSpec)``, where an unknown field is
an error; between services it stays lenient.

Events: ``job.submitted`` carries the spec; the advisor answers with
``job.advised`` (``schemas/advisor.py``: its payload holds the typed decision
inputs); a runner reports ``job.started`` and a terminal event.

Spelling: **cancelled**, everywhere (the ``job.cancelled`` event, the
``cancelled`` job and adapter statuses). Every stored event and status already
says it, so no old log changes meaning, and it is RunPod's and Modal's word;
Replicate's ``canceled`` is mapped where its answer enters
(``services/adapters/replicate.py``). Where a person types a status or an
event name (a query, a filter, a subject pattern), :func:`spelling` accepts
``canceled`` too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec

from schemas.envelope import event_type
from schemas.providers import MAX_VRAM_GB
from schemas.strict import strict

JobKind = Literal["image", "video", "llm", "speech", "other"]
Target = Literal["local", "cpu", "remote", "wait", "infeasible", "rejected"]
"""``wait``: the job fits once something frees; ``infeasible``: no target can ever
run it; ``rejected``: an older advisor's answer to a spec it could not accept."""

# Bounds of a job spec (also of the advisor config's [defaults]): generous and
# finite, so the largest admitted job still gets finite minutes, VRAM and costs.
Side = Annotated[int, msgspec.Meta(ge=1, le=16384)]
Steps = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Tokens = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
AudioSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
MAX_COST_USD = 1_000_000.0
TARGET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TargetName = Annotated[str, msgspec.Meta(pattern=TARGET_PATTERN)]


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a client asks to run. Units: pixels, frames, GB of VRAM (10^9 bytes),
    USD, seconds of audio.

    Left-out sizes take the advisor config's ``[defaults]``; a field a kind does
    not use is ignored by it (``tokens`` for an image). ``vram_gb`` is an explicit
    VRAM demand that replaces the estimate; ``max_cost_usd`` caps a remote
    estimate; ``prefer`` (``local``, ``cpu``, ``remote`` or a provider id) wins
    when feasible; ``debug`` asks the advisor for its details block. Every bad
    value fails with msgspec's message naming the path (``Expected `int` >= 1 -
    at `$.width```).
    """

    kind: JobKind = "image"
    width: Side | None = None
    height: Side | None = None
    batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 1
    frames: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    steps: Steps | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    vram_gb: Annotated[float, msgspec.Meta(gt=0, le=MAX_VRAM_GB)] | None = None
    max_cost_usd: Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_USD)] | None = None
    prefer: TargetName | None = None
    debug: bool = False
    tokens: Tokens | None = None
    audio_seconds: AudioSeconds | None = None


JobSpecBody = strict(JobSpec)
"""The spec as a person types it (an HTTP body): an unknown field is an error."""


class JobSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """A job was asked for. Fields after ``spec`` come from the scheduler
    (``schemas/scheduler.py``): what to run, so any scheduler instance can run
    or retry it from the log alone. None/empty on events of older versions."""

    spec: JobSpec
    executor: str | None = None
    payload: Any = None
    idempotency_key: str | None = None
    max_attempts: int = 1
    timeout_s: float | None = None
    priority: int = 0
    owner: str | None = None
    """The scheduler instance that took the request (it runs the job)."""


class JobStarted(msgspec.Struct, frozen=True, kw_only=True):
    target: str
    provider: str | None = None
    attempt: int | None = None
    executor: str | None = None
    owner: str | None = None
    """The scheduler instance running this attempt: its lease must stay fresh."""
    reason: str | None = None
    """Why the attempt left the advised target (a cloud pod, serverless), with numbers."""


class JobSucceeded(msgspec.Struct, frozen=True, kw_only=True):
    artifacts: list[str] = []
    cost_usd: float | None = None
    attempt: int | None = None
    dry_run: bool = False
    remote_id: str | None = None
    provider: str | None = None


class JobFailed(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    code: str | None = None
    """``executor``, ``timeout``, ``lease_expired``, ``infeasible``, ``bad_request``,
    ``budget``, ``attempts``; None on older events."""
    attempt: int | None = None


class JobCancelled(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""


CANCELLED: Final = "cancelled"
_OTHER_SPELLING = re.compile(r"(?<![a-z])canceled(?![a-z])")


def spelling(typed: str) -> str:
    """What a person typed (a status, an event name, a subject pattern) in the
    spelling gpuroute uses: ``canceled`` becomes ``cancelled`` as a whole word
    (``job.canceled`` -> ``job.cancelled``); anything else is returned as is."""
    return _OTHER_SPELLING.sub(CANCELLED, typed) if "canceled" in typed else typed


_SCHEDULER: dict[str, Any] = {"publishers": ("scheduler",), "readers": ("scheduler",)}
JobSubmittedEvent = event_type(
    "job.submitted",
    JobSubmitted,
    "A client asked to run a job.",
    publishers=("scheduler",),
    readers=("advisor", "scheduler"),  # the advisor's JetStream consumer
)
JobStartedEvent = event_type(
    "job.started", JobStarted, "A job began running on its target.", **_SCHEDULER
)
JobSucceededEvent = event_type(
    "job.succeeded", JobSucceeded, "A job finished successfully.", **_SCHEDULER
)
JobFailedEvent = event_type("job.failed", JobFailed, "A job ended with an error.", **_SCHEDULER)
JobCancelledEvent = event_type(
    f"job.{CANCELLED}", JobCancelled, "A job was cancelled.", **_SCHEDULER
)
