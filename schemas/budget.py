"""The budget service's messages: limits, jobs, lazy assets, the profiler.

Events (every one the budget publishes carries ``n``, its change number; one
change is one input event plus the output events that share its ``n``):

    budget.state            BudgetState: {trigger, payload, timestamp} for every change
                            (limits, job register/start/finish, refresh, evaluation, evict)
    budget.limits.updated   LimitsUpdated: the limits after an apply (output of a change)
    asset.registered        AssetRegistered: a lazily loaded asset and its size
    asset.touched           AssetTouched: an asset was used (LRU order)
    asset.evicted           AssetEvicted: the owner should unload it (output of a change)
    profiler.mark           ProfilerMark: a named moment
    profiler.span           ProfilerSpan: timed code (one run, or an aggregate of many)
    profiler.reset          ProfilerReset: the dashboard starts over
    profiler.snapshot       ProfilerSnapshot: the dashboard, periodically

A ``budget.state`` payload holds what the decision used (``BudgetChange``:
the request, the limits, the telemetry figures and the flag when they changed)
and what it decided (answer, transitions, evictions, counts), so a replay
re-runs each decision from the log and compares byte for byte. Units: MB are
MiB, as the telemetry reports memory; CPU is percent of the whole machine.

Request types are strict (a typo is a 400); event payloads are lenient.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from schemas.envelope import Timestamp, event_type
from schemas.limits import MAX_NAME, MAX_TEXT, Position
from schemas.strict import strict
from schemas.subjects import BUDGET_CLIENT, command

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
MB = Annotated[int, msgspec.Meta(ge=0, le=1 << 24)]
"""Megabytes (MiB), up to 16 TiB."""
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Finite = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
Scalar = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | int | Finite | bool | None
Metadata = Annotated[dict[Name, Scalar], msgspec.Meta(max_length=32)]
Device = Literal["ram", "vram"]
QueueState = Literal["queued", "delayed", "running", "rejected", "finished"]
Trigger = Literal[
    "limits.updated",
    "job.registered",
    "job.started",
    "job.finished",
    "refresh",
    "evaluation",
    "asset.evicted",
]

MAX_JOBS = 10_000
"""Jobs the budget tracks at once (queued, delayed, running); more are refused (429)."""
MAX_ASSETS = 10_000
MAX_LIMIT = 1000
"""Largest ``limit`` of a poll or a dashboard."""


# -- limits --------------------------------------------------------------------


class BudgetLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the local machine may use. ``evaluation_interval`` and
    ``starvation_age_s`` are seconds; a delayed job older than
    ``starvation_age_s`` is not passed again by a smaller one."""

    max_cpu_percent: Annotated[float, msgspec.Meta(gt=0, le=100)] = 90.0
    max_mem_mb: Annotated[int, msgspec.Meta(ge=1, le=1 << 24)] = 16384
    max_vram_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 22)] = 8192
    max_running_jobs: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    max_queue_depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_JOBS)] = 64
    lazy_asset_target_mb: MB = 1024
    evaluation_interval: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 5.0
    starvation_age_s: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 30.0


class LimitsApply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/perf/budgets/apply``: the limits to change (absent: unchanged)."""

    max_cpu_percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    max_mem_mb: Annotated[int, msgspec.Meta(ge=1, le=1 << 24)] | None = None
    max_vram_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 22)] | None = None
    max_running_jobs: Annotated[int, msgspec.Meta(ge=1, le=256)] | None = None
    max_queue_depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_JOBS)] | None = None
    lazy_asset_target_mb: MB | None = None
    evaluation_interval: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] | None = None
    starvation_age_s: Annotated[float, msgspec.Meta(ge=0, le=86400)] | None = None


class BudgetSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """[budget] in the config file: the limits of a first start (afterwards the
    log's ``budget.limits.updated`` wins), and the service's own periods."""

    limits: BudgetLimits = BudgetLimits()
    snapshot_interval_s: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 60.0
    """Seconds between ``profiler.snapshot`` events (only when marks or spans
    changed the dashboard); 0: none."""
    profile_flush_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    """Seconds between ``profiler.span`` aggregates of the service's own hot
    paths (only while the profiler flag is on)."""
    ready_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How long start waits for the state to be rebuilt from the store."""


# -- jobs ----------------------------------------------------------------------


class Perf(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a job declares it needs. Strict: ``{"vram": 2048}`` is an error,
    not a job that needs nothing."""

    cpu_percent: Percent = 0.0
    ram_mb: MB = 0
    vram_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 22)] = 0


class JobRegister(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Register a job. ``perf`` at the top level or at ``payload.perf`` (as the
    existing clients send it); the rest of ``payload`` is not kept."""

    job_id: Name
    job_type: Name = "job"
    perf: Perf | None = None
    payload: Annotated[dict[str, Any], msgspec.Meta(max_length=256)] | None = None


class JobRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    job_id: Name


class JobFinish(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``cancelled`` is taken and recorded as ``canceled`` (one spelling)."""

    job_id: Name
    status: Literal["complete", "canceled", "cancelled", "error"] = "complete"


class Refresh(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Re-evaluate now."""


class Poll(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after: Position = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 100


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A job's queue state changed (``previous`` None: it was just registered)."""

    n: int
    job_id: str
    state: QueueState
    previous: QueueState | None = None
    code: str
    reason: str


class JobAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of register, start and finish. ``code`` is the reason code:
    ``fits``, ``budgets_off``, ``vram``, ``ram``, ``cpu``, ``running_jobs``,
    ``queue_depth``, ``behind`` (a starving job goes first), ``infeasible``
    (``queue_state`` rejected: it can never run under these limits), or
    ``complete``/``canceled``/``error`` for a finish."""

    job_id: str
    queue_state: QueueState
    code: str
    reason: str
    n: int = 0
    transitions: list[Transition] = []


class Transitions(msgspec.Struct, frozen=True, kw_only=True):
    """Reply of refresh and poll. ``last``: the newest change number; ``more``:
    the poll stopped at ``limit``; ``oldest``: the oldest change still kept in
    memory (older ones: read ``budget.state`` events from the store)."""

    transitions: list[Transition]
    last: int
    more: bool = False
    oldest: int = 0


# -- telemetry as the budget reads it ------------------------------------------


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """Figures of one ``telemetry.sampled`` event (None: not readable)."""

    sample_id: str
    ts: Timestamp
    cpu_percent: float | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    vram_used_mb: int | None = None
    vram_total_mb: int | None = None


class Inputs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a change used that is not its request; each only when it differs
    from the previous change's (None: unchanged)."""

    metrics: Metrics | None = None
    enforce: bool | None = None
    limits: BudgetLimits | None = None


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    queued: int = 0
    delayed: int = 0
    running: int = 0
    assets: int = 0


class BudgetChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The ``payload`` of ``budget.state``: the request and inputs of one change
    and what it decided."""

    n: int
    inputs: Inputs = Inputs()
    job_id: str | None = None
    job_type: str | None = None
    perf: Perf | None = None
    status: str | None = None
    target_mb: int | None = None
    device: Device | None = None
    answer: JobAnswer | None = None
    transitions: list[Transition] = []
    evicted: list[str] = []
    freed_mb: int = 0
    counts: Counts = Counts()


class BudgetState(msgspec.Struct, frozen=True, kw_only=True):
    trigger: Trigger
    payload: BudgetChange
    timestamp: Timestamp


class LimitsUpdated(msgspec.Struct, frozen=True, kw_only=True):
    limits: BudgetLimits
    changed: list[str] = []
    origin: Literal["api", "config"] = "api"
    n: int = 0


# -- assets --------------------------------------------------------------------


class AssetRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    asset_id: Name


class AssetEvict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Evict least recently used assets (of ``device``, or any) until
    ``target_mb`` is freed or none is left."""

    target_mb: MB
    device: Device | None = None


class AssetRegistered(msgspec.Struct, frozen=True, kw_only=True):
    """A lazily loaded asset (a checkpoint, a LoRA, a texture, LLM weights).
    Registering an id again replaces it and counts as a use. ``n``: set by the
    service (a request's is ignored)."""

    asset_id: Name
    size_mb: MB
    kind: Name = "asset"
    device: Device = "vram"
    metadata: Metadata = {}
    owner: Name | None = None
    n: int = 0


AssetRegister = strict(AssetRegistered)
"""The request (``POST /api/perf/budgets/assets/register``): strict."""


class AssetTouched(msgspec.Struct, frozen=True, kw_only=True):
    asset_id: str
    n: int = 0


class AssetEvicted(msgspec.Struct, frozen=True, kw_only=True):
    """``code``: ``pressure`` (RAM or VRAM over its budget) or ``requested``."""

    asset_id: str
    size_mb: int
    device: Device
    code: Literal["pressure", "requested"]
    reason: str
    owner: str | None = None
    n: int = 0


class AssetView(msgspec.Struct, frozen=True, kw_only=True):
    asset_id: str
    size_mb: int
    kind: str
    device: Device
    owner: str | None
    registered: float
    last_used: float
    metadata: dict[str, Scalar] = {}


class AssetAnswer(msgspec.Struct, frozen=True, kw_only=True):
    asset: AssetView
    n: int


class Evicted(msgspec.Struct, frozen=True, kw_only=True):
    evicted: list[str]
    freed_mb: int
    n: int


# -- profiler ------------------------------------------------------------------


class ProfilerMark(msgspec.Struct, frozen=True, kw_only=True):
    """A named moment. ``n``: set by the service (a request's is ignored)."""

    name: Name
    category: Name = "default"
    metadata: Metadata = {}
    n: int = 0


class ProfilerSpan(msgspec.Struct, frozen=True, kw_only=True):
    """Timed code: ``wall_ms`` in total over ``count`` runs (1: one run),
    ``max_ms`` the longest; ``memory_delta_kb`` the memory it added
    (``memory_source``: ``rss``, ``tracemalloc`` or ``none``)."""

    name: Name
    category: Name = "default"
    wall_ms: Annotated[float, msgspec.Meta(ge=0, le=1e12)]
    count: Annotated[int, msgspec.Meta(ge=1, le=1 << 40)] = 1
    max_ms: Annotated[float, msgspec.Meta(ge=0, le=1e12)] | None = None
    memory_delta_kb: Annotated[int, msgspec.Meta(ge=-(1 << 40), le=1 << 40)] = 0
    memory_source: Literal["rss", "tracemalloc", "none"] = "none"
    metadata: Metadata = {}
    n: int = 0


Mark = strict(ProfilerMark)
Span = strict(ProfilerSpan)
"""The requests (``POST /api/perf/profiler/mark|span``): strict."""


class ProfilerReset(msgspec.Struct, frozen=True, kw_only=True):
    n: int = 0


class DashboardQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 10


class SpanStats(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    category: str
    count: int
    total_ms: float
    avg_ms: float
    max_ms: float
    memory_kb: int
    """Sum of memory deltas."""
    max_memory_kb: int


class CategoryStats(msgspec.Struct, frozen=True, kw_only=True):
    category: str
    spans: int
    marks: int
    total_ms: float
    memory_kb: int


class MarkView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    category: str
    ts: float
    metadata: dict[str, Scalar] = {}


class Dashboard(msgspec.Struct, frozen=True, kw_only=True):
    """Shaped for charting: each list is already sorted (``top_time`` by
    ``total_ms``, ``top_memory`` by ``max_memory_kb``, ``categories`` by
    ``total_ms``, ``recent`` newest first)."""

    top_time: list[SpanStats]
    top_memory: list[SpanStats]
    categories: list[CategoryStats]
    recent: list[MarkView]
    spans: int
    marks: int
    since: float | None = None


class ProfilerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    dashboard: Dashboard
    n: int = 0


class ProfilerResetRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reset the dashboard (a ``profiler.reset`` event)."""


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """Reply of mark, span and reset: the change number of the event."""

    n: int


# -- snapshot, health ----------------------------------------------------------


class Snapshot(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``GET /api/perf/budgets``."""


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """``held``: telemetry's figure (less what finished since it was taken)
    plus what admitted jobs and new assets declare that it does not show yet."""

    limit: float
    held: float
    free: float
    in_use: float | None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    job_type: str
    queue_state: QueueState
    code: str
    reason: str
    perf: Perf
    registered: float
    since: float


class BudgetSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    enforce: bool
    limits: BudgetLimits
    metrics: Metrics | None
    resources: dict[str, Resource]
    queued: list[str]
    delayed: list[str]
    running: list[str]
    jobs: list[JobView]
    assets: list[AssetView]
    n: int


class Health(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``GET /api/perf/health``."""


class PerfHealth(msgspec.Struct, frozen=True, kw_only=True):
    flags: dict[str, bool]
    budgets: bool
    dashboard: bool
    counts: Counts
    top_offenders: list[JobView]
    """Admitted jobs holding the most VRAM (then RAM)."""
    top_time: list[SpanStats]
    n: int


# -- events and subjects -------------------------------------------------------

_BUDGET = {"publishers": ("budget",), "readers": ("budget",)}

BudgetStateEvent = event_type(
    "budget.state", BudgetState, "A budget change: its trigger, inputs and decisions.", **_BUDGET
)
LimitsUpdatedEvent = event_type(
    "budget.limits.updated", LimitsUpdated, "The budget's limits were changed.", **_BUDGET
)
AssetRegisteredEvent = event_type(
    "asset.registered", AssetRegistered, "A lazily loaded asset was registered.", **_BUDGET
)
AssetTouchedEvent = event_type(
    "asset.touched", AssetTouched, "A lazily loaded asset was used.", **_BUDGET
)
AssetEvictedEvent = event_type(
    "asset.evicted",
    AssetEvicted,
    "An asset should be unloaded by its owner (LRU eviction).",
    publishers=("budget",),
    readers=("budget", BUDGET_CLIENT),  # the owner's BudgetClient.on_evict
)
ProfilerMarkEvent = event_type("profiler.mark", ProfilerMark, "A profiler mark.", **_BUDGET)
ProfilerSpanEvent = event_type(
    "profiler.span", ProfilerSpan, "Timed code (one run or many).", **_BUDGET
)
ProfilerResetEvent = event_type(
    "profiler.reset", ProfilerReset, "The profiler was reset.", **_BUDGET
)
ProfilerSnapshotEvent = event_type(
    "profiler.snapshot", ProfilerSnapshot, "The profiler dashboard, periodically.", **_BUDGET
)

_P = "gpuroute.budget."
_CLIENTS = ("gateway", "scheduler")
_AND_PROGRAMS = (*_CLIENTS, BUDGET_CLIENT)
"""Also called by ``services/budget/client.py``."""


def _command(
    name: str, description: str, request: type, reply: type, clients: tuple[str, ...] = _CLIENTS
) -> str:
    return command(_P + name, description, clients=clients, request=request, reply=reply)


SNAPSHOT = _command("snapshot", "limits, metrics, jobs and assets.", Snapshot, BudgetSnapshot)
APPLY = _command("apply", "change limits; replies the snapshot.", LimitsApply, BudgetSnapshot)
REGISTER = _command("jobs.register", "register a job: queued or delayed.", JobRegister, JobAnswer,
                    _AND_PROGRAMS)  # fmt: skip
START = _command("jobs.start", "start a queued job.", JobRef, JobAnswer, _AND_PROGRAMS)
FINISH = _command("jobs.finish", "a job ended; frees its budget.", JobFinish, JobAnswer,
                  _AND_PROGRAMS)  # fmt: skip
REFRESH = _command("jobs.refresh", "re-evaluate now.", Refresh, Transitions)
POLL = _command("jobs.poll", "transitions after a change number.", Poll, Transitions)
ASSET_REGISTER = _command("assets.register", "register an asset.", AssetRegister, AssetAnswer,
                          _AND_PROGRAMS)  # fmt: skip
ASSET_TOUCH = _command("assets.touch", "an asset was used.", AssetRef, AssetAnswer, _AND_PROGRAMS)
ASSET_EVICT = _command("assets.evict", "evict LRU assets.", AssetEvict, Evicted)
MARK = _command("profiler.mark", "record a mark.", Mark, Recorded, _AND_PROGRAMS)
SPAN = _command(
    "profiler.span", "record timed code.", Span, Recorded, (*_AND_PROGRAMS, "store", "advisor")
)  # their hot paths: runtime/profiling.py
DASHBOARD = _command("profiler.dashboard", "the dashboard.", DashboardQuery, Dashboard)
RESET = _command("profiler.reset", "reset the dashboard.", ProfilerResetRequest, Recorded)
HEALTH = _command("health", "flags, queue counts, top offenders.", Health, PerfHealth)
