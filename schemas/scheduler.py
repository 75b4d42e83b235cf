"""The scheduler's messages: lifecycle events after the decision, and its endpoints.

Lifecycle of a job (every step an event keyed by the job id)::

    job.submitted -> job.advised -> job.queued | job.delayed -> job.started
      -> job.progress ... -> job.succeeded | job.failed | job.cancelled
    job.retried    another attempt after a retryable failure or a lost runner
    job.rerouted   a provider failure or timeout moved the job to another target

``job.submitted``/``started``/``succeeded``/``failed``/``cancelled`` are in
``schemas/jobs.py`` (older events keep their meaning); ``job.advised`` is the
advisor's (``schemas/advisor.py``).

Leases: each scheduler instance publishes ``job.lease.renewed`` (key: the
instance id) every ``lease_s / 3`` seconds while it runs. A job's lease is its
owner's: a job whose owner's last renewal is older than the renewal's
``ttl_s`` is taken over by another instance (retried, or failed once its
attempts are spent). One event per instance, not one per job: a thousand
running jobs cost the log nothing more. See docs/scheduler.md.

Request types of the endpoints are strict (a typo is a 400 naming it), event
payloads lenient.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from schemas.envelope import event_type
from schemas.jobs import JobSpec
from schemas.limits import MAX_NAME, MAX_TEXT
from schemas.subjects import command

Executor = Literal["comfyui", "command", "remote", "synthetic"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=r"^[\w.-]+$")]
ArtifactName = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^/\\\x00]+$")]
State = Literal[
    "submitted", "advised", "queued", "delayed", "running", "retrying",
    "succeeded", "failed", "cancelled", "infeasible",
]  # fmt: skip
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "infeasible"})
MAX_ATTEMPTS = 20
MAX_LIST = 1000


# -- events --------------------------------------------------------------------


class JobQueued(msgspec.Struct, frozen=True, kw_only=True):
    """Admitted (``code`` ``fits`` or ``budgets_off``): it starts when a slot frees."""

    code: str
    reason: str = ""


class JobDelayed(msgspec.Struct, frozen=True, kw_only=True):
    """Not admitted yet: ``code`` is the budget's (``vram``, ``running_jobs``, ...)
    or ``wait`` (the advisor's), with the sentence and its numbers."""

    code: str
    reason: str = ""


class JobProgress(msgspec.Struct, frozen=True, kw_only=True):
    """``value`` of ``maximum`` done, or one ``line`` of output (bounded)."""

    attempt: int
    value: float | None = None
    maximum: float | None = None
    node: str | None = None
    line: str | None = None
    stream: str | None = None
    remote_id: str | None = None


class JobRetried(msgspec.Struct, frozen=True, kw_only=True):
    """Attempt ``attempt`` (the next one) starts after ``delay_s`` (exponential
    backoff); ``owner`` is the instance that will run it."""

    attempt: int
    delay_s: float
    reason: str
    owner: str | None = None


class JobRerouted(msgspec.Struct, frozen=True, kw_only=True):
    """The job's target changed: a ``remote`` attempt failed at ``from_provider``
    and the advisor honours ``to_provider``, or a job waiting (``from_target``
    ``wait``) got a new decision. ``rule``: the new decision's rule."""

    from_target: str
    to_target: str
    reason: str
    from_provider: str | None = None
    to_provider: str | None = None
    rule: str | None = None


class JobLeaseRenewed(msgspec.Struct, frozen=True, kw_only=True):
    """Key: ``instance``. Every job that instance owns stays leased until
    ``ts + ttl_s``."""

    instance: str
    ttl_s: float
    running: int = 0


_S = {"publishers": ("scheduler",), "readers": ("scheduler",)}
JobQueuedEvent = event_type("job.queued", JobQueued, "A job was admitted to run.", **_S)
JobDelayedEvent = event_type(
    "job.delayed", JobDelayed, "A job waits for the budget (reason code).", **_S
)
JobProgressEvent = event_type(
    "job.progress", JobProgress, "A running job's progress or output line.", **_S
)
JobRetriedEvent = event_type(
    "job.retried", JobRetried, "A job gets another attempt after backoff.", **_S
)
JobReroutedEvent = event_type(
    "job.rerouted", JobRerouted,
    "A job moved to another target (a failed provider, or out of wait).", **_S
)  # fmt: skip
JobLeaseRenewedEvent = event_type(
    "job.lease.renewed", JobLeaseRenewed, "A scheduler instance is alive: its jobs' lease.", **_S
)


# -- requests and replies ------------------------------------------------------


class JobRequest(JobSpec, frozen=True, kw_only=True):
    """``POST /api/jobs``: the job spec, plus what to run.

    ``payload`` is the executor's: a ComfyUI workflow in API format, an argv
    list, a provider input, synthetic parameters. ``idempotency_key``: a
    repeated request with the same key answers the same job. ``timeout_s``
    bounds each attempt; ``priority``: higher starts first."""

    executor: Executor = "synthetic"
    payload: Any = None
    idempotency_key: Name | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] = 3
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=86_400)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=-100, le=100)] = 0


class DecisionView(msgspec.Struct, frozen=True, kw_only=True):
    target: str
    rule: str
    reason: str
    provider: str | None = None


class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    """``queued``, ``delayed``, ``off`` (budgets off or no budget service)."""
    code: str
    reason: str = ""


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of a submit. ``decision`` None: the advisor has not answered
    within the scheduler's ``advise_timeout_s`` (the job waits for it)."""

    job_id: str
    state: str
    created: bool
    decision: DecisionView | None = None
    budget: BudgetView | None = None


class JobsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/jobs``: newest first; ``after``: a job id of the previous page."""

    state: State | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)] = 50
    after: JobId | None = None


class JobRef(msgspec.Struct, frozen=True, kw_only=True):
    id: JobId


class ArtifactRef(msgspec.Struct, frozen=True, kw_only=True):
    id: JobId
    name: ArtifactName


class HistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    ts: float


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """One job as ``GET /api/jobs/{id}`` shows it (the job table's row)."""

    job_id: str
    state: str
    kind: str | None = None
    executor: str | None = None
    decision: DecisionView | None = None
    budget: BudgetView | None = None
    attempts: int = 0
    max_attempts: int = 1
    progress: float | None = None
    last_line: str | None = None
    artifacts: list[str] = []
    cost_usd: float | None = None
    dry_run: bool = False
    error: str | None = None
    error_code: str | None = None
    owner: str | None = None
    remote_id: str | None = None
    submitted_ts: float | None = None
    updated_ts: float = 0.0
    history: list[str] = []
    reroutes: int = 0


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobView]
    more: bool = False


class ArtifactBody(msgspec.Struct, frozen=True, kw_only=True):
    """An artifact (or its ``.json`` sidecar), base64 in ``data``; over
    ``MAX_ARTIFACT_INLINE`` bytes is a 413 naming the file on disk."""

    name: str
    content_type: str
    size: int
    data: str
    encoding: Literal["base64"] = "base64"


MAX_ARTIFACT_INLINE = 512 * 1024


class StatsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``gpuroute.scheduler.stats``: no fields (the gateway's ``/metrics`` asks it)."""


class DecisionCount(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs the advisor decided with ``rule`` whose target is now ``target`` (a
    reroute moves a job to its new target)."""

    rule: str
    target: str
    count: int


class SchedulerStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts over the whole job table (every instance folds every job, so any
    instance answers for all). ``jobs``: every state of :data:`State` (0 when
    none) plus any other state a row holds; ``decisions`` sorted by rule, target;
    ``position``: the last store position folded into the table."""

    jobs: dict[str, int]
    decisions: list[DecisionCount]
    position: int = 0


_P = "gpuroute.scheduler."
_CLIENTS = ("gateway",)
SUBMIT = command(_P + "submit", "submit a job (JobRequest).", clients=_CLIENTS,
                 request=JobRequest, reply=JobAccepted)  # fmt: skip
LIST = command(_P + "list", "jobs, newest first.", clients=_CLIENTS,
               request=JobsQuery, reply=JobList)  # fmt: skip
GET = command(_P + "get", "one job with its history.", clients=_CLIENTS,
              request=JobRef, reply=JobView)  # fmt: skip
CANCEL = command(_P + "cancel", "cancel a job.", clients=_CLIENTS,
                 request=JobRef, reply=JobView)  # fmt: skip
ARTIFACT = command(_P + "artifact", "an artifact or its .json sidecar.", clients=_CLIENTS,
                   request=ArtifactRef, reply=ArtifactBody)  # fmt: skip
STATS = command(_P + "stats", "jobs per state, decisions per rule and target.",
                clients=_CLIENTS, request=StatsRequest, reply=SchedulerStats)  # fmt: skip
