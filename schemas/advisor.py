"""The compute advisor's messages: its decision, cost preview, flags and queue depth.

Events (stored, folded by the advisor into the context of each decision):

    queue.depth.changed   QueueDepthChanged: jobs waiting for remote compute

The advisor also folds ``telemetry.sampled`` (schemas/telemetry.py),
``provider.upserted`` and ``provider.removed`` (schemas/providers.py) and
``flags.changed`` (schemas/flags.py), and publishes:

    job.advised           JobAdvised: where a job runs, with the typed inputs
                          (:class:`AdvisedInputs`) a what-if replay re-runs

Request/reply endpoints (``nats.micro``, service ``gpuroute-advisor``) are the
``*_SUBJECT`` constants below, each with its request and reply type (the
provider registry's are in schemas/providers.py). Every type here is lenient
(an older reader skips newer fields), requests too: they are messages between
services. Where a person types one (an HTTP body, a query) it is decoded as its
strict form, ``schemas.strict.strict(T)``, so a typo is an error naming it.

Units: GB (10^9 bytes) for VRAM demand and offers, USD, minutes of wall-clock
unless a name says otherwise.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.envelope import event_type
from schemas.flags import FlagValues
from schemas.jobs import TARGET_PATTERN, JobKind, JobSpec, JobSpecBody, Target
from schemas.providers import Name, Price, PriceSnapshot, ProviderId, ProviderStats
from schemas.scheduler import JobId
from schemas.subjects import command
from schemas.telemetry import GpuDevice, TelemetrySample

# -- subjects ------------------------------------------------------------------

ADVISE_SUBJECT = command(
    "gpuroute.advisor.advise",
    "JobSpec -> Decision: what would the advisor decide (no job is created).",
    clients=("gateway", "scheduler"),
    request="JobSpec",
    reply="Decision",
)
COSTS_SUBJECT = command(
    "gpuroute.advisor.costs",
    "CostRequest -> CostPreview.",
    clients=("gateway",),
    request="CostRequest",
    reply="CostPreview",
)
GPUS_SUBJECT = command(
    "gpuroute.advisor.gpus",
    "GpuListRequest -> GpuList: the latest telemetry sample the advisor folded.",
    clients=("gateway",),
    request="GpuListRequest",
    reply="GpuList",
)
FLAGS_GET_SUBJECT = command(
    "gpuroute.flags.get",
    "FlagsQuery -> FlagsView.",
    server="advisor",
    clients=("gateway",),
    request="FlagsQuery",
    reply="FlagsView",
)
FLAGS_SET_SUBJECT = command(
    "gpuroute.flags.set",
    "FlagsUpdate -> FlagsView; publishes flags.changed (400 naming an unknown flag).",
    server="advisor",
    clients=("gateway",),
    request="FlagsUpdate",
    reply="FlagsView",
)

WHATIF_SUBJECT = command(
    "gpuroute.advisor.whatif",
    "WhatIfRequest -> WhatIfAnswer: one job's recorded decision re-run with other"
    " thresholds and prices; records nothing (404: no decision recorded for the job;"
    " 409: it cannot be re-run).",
    clients=("gateway",),
    request="WhatIfRequest",
    reply="WhatIfAnswer",
)
CONFIG_SUBJECT = command(
    "gpuroute.advisor.config",
    "AdvisorConfigQuery -> AdvisorConfigView: the thresholds the advisor decides with.",
    clients=("gateway",),
    request="AdvisorConfigQuery",
    reply="AdvisorConfigView",
)

Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
HeadroomGb = Annotated[float, msgspec.Meta(ge=0, le=1024)]
MAX_QUEUE_DEPTH = 1_000_000_000


# -- remote queue --------------------------------------------------------------


class QueueDepthChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Jobs waiting in a queue; the advisor reads the ``remote`` queue."""

    depth: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUEUE_DEPTH)]
    queue: Name = "remote"


# -- flags ---------------------------------------------------------------------


class FlagsQuery(msgspec.Struct, frozen=True, kw_only=True):
    pass


class FlagsUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``{"flags": {"features.enable_compute": true}}``; names from schemas.flags.DEFAULTS."""

    flags: FlagValues


class FlagsView(msgspec.Struct, frozen=True, kw_only=True):
    """Every known flag with its value (defaults filled in)."""

    flags: dict[str, bool]
    defaults: dict[str, bool]
    descriptions: dict[str, str]
    changed: list[str] = []
    event_id: str | None = None
    applied: bool = True


# -- derived attributes, thresholds ----------------------------------------------

VramSource = Literal["hint", "model", "formula"]


class JobDerived(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules use, with the spec's defaults filled in.

    ``vram_formula`` spells the computation with its numbers. Minutes exclude
    queueing; ``minutes_remote`` is per provider id, on the GPU the advisor
    would rent there, cold start included.
    """

    kind: str
    width: int
    height: int
    pixels: int
    batch: int
    frames: int
    megapixels_total: float
    steps: int
    tokens: int
    audio_seconds: float
    params_b: float | None
    vram_demand_gb: float
    vram_source: VramSource
    vram_formula: str
    transfer_gb: float
    minutes_reference_gpu: float
    minutes_local_gpu: float
    minutes_cpu: float
    minutes_remote: dict[str, float] = {}


class LocalGpuThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """Rule 1: a local GPU takes the job when free VRAM >= demand * (1 + fraction) + gb."""

    enabled: bool = True
    headroom_gb: HeadroomGb = 1.0
    headroom_fraction: Fraction = 0.10


class RemoteThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """Rule 2: the cheapest fitting provider, when ``features.enable_compute`` is on.

    The remote queue is saturated (rule skipped) when its depth >= ``queue_saturated_at``.
    A provider GPU fits when its VRAM >= demand + ``headroom_gb``.
    """

    enabled: bool = True
    queue_saturated_at: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 8
    headroom_gb: HeadroomGb = 0.5


class CpuThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """Rule 3: the CPU takes a job that is small enough on every count below.

    ``max_megapixels`` bounds width*height*batch*frames/1e6 (image/video only);
    ``ram_factor``: available RAM must be >= demand * ram_factor (skipped when
    RAM is unknown).
    """

    enabled: bool = True
    max_megapixels: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 0.6
    max_minutes: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 10.0
    ram_factor: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.2
    allowed_kinds: Annotated[tuple[JobKind, ...], msgspec.Meta(max_length=16)] = (
        "image",
        "speech",
        "llm",
        "other",
    )


class RuleThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """The ``[rules]`` the advisor ran with (its config file is read as the strict form)."""

    local_gpu: LocalGpuThresholds = LocalGpuThresholds()
    remote: RemoteThresholds = RemoteThresholds()
    cpu: CpuThresholds = CpuThresholds()


# -- the decision --------------------------------------------------------------

RuleName = Literal[
    "preferred_target",
    "local_gpu",
    "remote_cheapest",
    "cpu_small_job",
    "wait_for_local_gpu",
    "infeasible",
]


class ContextSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The part of the decision context a reader needs to understand a decision."""

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
    thresholds: RuleThresholds
    derived: JobDerived
    context: ContextSnapshot
    candidates: list[Candidate]
    config_digest: str


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """Where the job goes, the rule that fired, and why with the numbers used.

    ``provider_id``/``gpu`` name the rented GPU when remote; ``gpu_index`` the
    local GPU. ``estimated_minutes`` includes a remote cold start;
    ``estimate_usd`` is the rounded cost (energy for local/CPU/wait).
    ``details`` is set when the spec asked for ``debug``. An ``infeasible``
    decision (no target can ever run the job; the reason has the numbers)
    carries no minutes and no price.
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


class AdvisedInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What ``job.advised`` keeps in ``inputs``: everything to re-run the decision.

    ``state_position`` is the store position the advisor's state had folded up
    to; folding the followed events of the log up to it rebuilds the context,
    and ``telemetry_sample_id``/``registry_version``/``flags``/
    ``remote_queue_depth`` check that rebuild. ``decision`` is the full decision
    (without details), for comparing.

    Every field has a default only so that the ``"inputs": {}`` of events written
    before ``inputs`` was typed (by other publishers, or without inputs) still
    decodes: such inputs have no ``decision`` and cannot be re-run
    (:attr:`JobAdvised.replayable`).
    """

    spec: JobSpec = JobSpec()
    telemetry_sample_id: str = ""
    flags: dict[str, bool] = {}
    registry_version: int = 0
    remote_queue_depth: int = 0
    state_position: int = 0
    config_digest: str = ""
    decision: Decision | None = None


class JobAdvised(msgspec.Struct, frozen=True, kw_only=True):
    """The advisor's decision. ``target`` is a :data:`~schemas.jobs.Target`;
    ``provider`` is set when remote; ``inputs`` records what the decision used."""

    target: str
    rule: str
    reason: str
    provider: str | None = None
    estimate_usd: float | None = None
    inputs: AdvisedInputs | None = None

    @property
    def replayable(self) -> AdvisedInputs | None:
        """The inputs, when they hold a decision to re-run (None otherwise)."""
        inputs = self.inputs
        return inputs if inputs is not None and inputs.decision is not None else None


# -- what-if for one job ---------------------------------------------------------

MAX_WHATIF_PRICES = 64
"""Providers one what-if may re-price."""


class WhatIfRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /api/advisor/whatif``: re-run job ``job_id``'s recorded decision.

    ``thresholds``: the ``[rules]`` to run with, whole (a field left out takes its
    embedded default, as in a ``gpuroute replay --what-if`` file); None: the
    advisor's own. ``price_overrides``: provider id -> USD per hour for every GPU
    that provider offered when the job was advised (applied after the config's
    own ``[[price_overrides]]``); a provider that was not registered then is a 400.
    """

    job_id: JobId
    thresholds: RuleThresholds | None = None
    price_overrides: Annotated[
        dict[ProviderId, Price], msgspec.Meta(max_length=MAX_WHATIF_PRICES)
    ] = {}


class WhatIfAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The recorded decision and the one the rules make with the request's numbers,
    on the same spec and context. ``changed``: target, provider or rule differ.
    ``cost_difference_usd``: new minus recorded estimate (None when either has
    none). ``config_digest`` is the what-if config's, ``recorded_config_digest``
    the one the decision was made with. Nothing is recorded (``dry_run``)."""

    job_id: str
    changed: bool
    recorded: Decision
    new: Decision
    cost_difference_usd: float | None
    thresholds: RuleThresholds
    price_overrides: dict[str, float]
    config_digest: str
    recorded_config_digest: str
    dry_run: bool = True


class AdvisorConfigQuery(msgspec.Struct, frozen=True, kw_only=True):
    pass


class AdvisorConfigView(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /api/advisor/config``: the thresholds the advisor decides with,
    its config digest (recorded with each decision) and how many
    ``[[price_overrides]]`` its config applies. The config holds no secret."""

    thresholds: RuleThresholds
    config_digest: str
    price_overrides: int


# -- cost preview --------------------------------------------------------------


class CostRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /api/compute/costs``.

    ``queue``: ``remote`` (compare every provider), ``local``, ``cpu`` or a
    provider id. Give a ``job`` or a bare ``duration_minutes`` (the run time).
    """

    queue: Annotated[str, msgspec.Meta(pattern=TARGET_PATTERN)] = "remote"
    job: JobSpec | None = None
    duration_minutes: Annotated[float, msgspec.Meta(gt=0, le=10_080)] | None = None
    debug: bool = False


class CostBreakdown(msgspec.Struct, frozen=True, kw_only=True):
    minutes: float
    billed_minutes: float
    base_rate_usd_per_hour: float
    rate_usd_per_hour: float
    compute_usd: float
    transfer_gb: float
    transfer_usd: float
    vram_surcharge_usd: float
    cold_start_s: float
    cold_start_usd: float


class CostEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One target's estimate. ``estimate`` is the rounded total in USD;
    ``total_usd`` the unrounded one used for comparing."""

    target: Literal["local", "cpu", "remote"]
    estimate: float
    total_usd: float
    minutes_total: float
    breakdown: CostBreakdown
    provider_id: str | None = None
    gpu: str | None = None
    informational: bool = False
    price_snapshot: PriceSnapshot | None = None
    hints: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []


class CostPreview(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to a cost request: the best estimate, then the comparison
    (cheapest first); ``registry`` and ``job`` only with ``debug``."""

    queue: str
    estimate: float | None
    currency: str = "USD"
    informational: bool = False
    provider_id: str | None = None
    gpu: str | None = None
    breakdown: CostBreakdown | None = None
    hints: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    comparison: list[CostEstimate] = []
    registry: ProviderStats | None = None
    job: JobDerived | None = None


# -- GPU list ------------------------------------------------------------------


class GpuListRequest(msgspec.Struct, frozen=True, kw_only=True):
    debug: bool = False


class GpuList(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /api/gpu/list``; ``raw`` (the whole sample) only with debug."""

    count: int
    devices: list[GpuDevice]
    reason: str | None
    sample_id: str
    ts: float
    flags: dict[str, bool]
    remote_enabled: bool
    raw: TelemetrySample | None = None


JobAdvisedEvent = event_type(
    "job.advised",
    JobAdvised,
    "The advisor decided where a job runs.",
    publishers=("advisor",),
    readers=("scheduler",),
)
QueueDepthChangedEvent = event_type(
    "queue.depth.changed",
    QueueDepthChanged,
    "The number of jobs waiting in a queue changed.",
    publishers=("scheduler",),
    readers=("advisor",),
)


AdvisorJobSpecBody = JobSpecBody
"""The older name of ``strict(JobSpec)``, for code not moved yet (the same type)."""
