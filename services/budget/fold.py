"""The budget's fold: every decision is a pure function of the budget's events.

The service and a replay decide each change with the same :func:`decide`
(:func:`apply` calls it for a ``budget.state`` event). The service builds a
change's input (a ``budget.state`` whose payload holds the request and the
inputs that changed: limits, the telemetry figures, the budgets flag),
decides it here, and publishes it with the decisions filled in (answer,
transitions, evictions, counts). A replay folds the log with the same
function and compares what it decides with what was recorded
(:func:`replay`): equal byte for byte, or the mismatch is named.

Events folded: ``budget.state``, ``asset.registered``, ``asset.touched``,
``profiler.mark|span|reset``. Outputs (``budget.limits.updated``,
``asset.evicted``, ``profiler.snapshot``) carry the ``n`` of their change and
are not folded. Every event the budget writes has a change number ``n``; an
event at or below the state's ``n`` is already in the state (the service's
own events coming back from the store) and is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from schemas import Event
from schemas.budget import (
    AssetRegistered,
    AssetTouched,
    BudgetChange,
    BudgetState,
    Counts,
    JobAnswer,
    Metrics,
    Perf,
    ProfilerMark,
    ProfilerReset,
    ProfilerSpan,
    Transition,
)
from schemas.flags import (
    ENABLE_PERF,
    ENABLE_PERF_BUDGETS,
    ENABLE_PERF_PROFILER_DASHBOARD,
    FlagsChanged,
    apply_flags,
)
from schemas.telemetry import TelemetrySample
from services.budget import admission, assets, ledger, profiler
from services.budget.admission import Book, Job
from services.budget.assets import Asset, Shelf
from services.budget.errors import Refused
from services.budget.profiler import Dash

WRITTEN = ("budget.>", "asset.>", "profiler.>")
"""Subject patterns of the events only the budget writes (each with its ``n``)."""
FOLLOWED = (*WRITTEN, "flags.changed", "telemetry.sampled")
"""Subject patterns of the events the budget folds."""


class BudgetFold(msgspec.Struct, kw_only=True):
    """``book``, ``shelf``, ``dash``: what the budget's own events built.
    ``flags`` and ``sample``: the live inputs (``flags.changed``, the newest
    ``telemetry.sampled`` of ``node``, any node when None); a decision reads
    them only through the inputs a change records."""

    book: Book = msgspec.field(default_factory=Book)
    shelf: Shelf = msgspec.field(default_factory=dict)
    dash: Dash = msgspec.field(default_factory=Dash)
    n: int = 0
    node: str | None = None
    flags: dict[str, bool] = {}
    sample: Metrics | None = None

    def enforce(self) -> bool:
        """Budgets on: ``features.enable_perf`` or ``features.enable_perf_budgets``."""
        return self.flags.get(ENABLE_PERF, False) or self.flags.get(ENABLE_PERF_BUDGETS, False)

    def dashboard_on(self) -> bool:
        flags = self.flags
        return flags.get(ENABLE_PERF, False) or flags.get(ENABLE_PERF_PROFILER_DASHBOARD, False)


def metrics_of(sample: TelemetrySample) -> Metrics:
    """The figures the budget reads from a sample (None where it has none)."""
    host = sample.host
    ram_used = None
    if host.ram_total_mib is not None and host.ram_available_mib is not None:
        ram_used = max(0, host.ram_total_mib - host.ram_available_mib)
    used = _total([g.memory_used_mib for g in sample.gpus])
    total = _total([g.memory_total_mib for g in sample.gpus])
    return Metrics(
        sample_id=sample.sample_id,
        ts=sample.ts,
        cpu_percent=host.cpu_percent,
        ram_used_mb=ram_used,
        ram_total_mb=host.ram_total_mib,
        vram_used_mb=used,
        vram_total_mb=total,
    )


def _total(values: list[int | None]) -> int | None:
    """The sum over GPUs; None when there is none or one could not be read."""
    known = [v for v in values if v is not None]
    return sum(known) if values and len(known) == len(values) else None


class Outcome(msgspec.Struct, kw_only=True):
    """What one change decided (the fields a ``budget.state`` records)."""

    answer: JobAnswer | None = None
    transitions: list[Transition] = []
    evicted: list[tuple[Asset, str]] = []
    requested: bool = False

    def record(self, change: BudgetChange, state: BudgetFold) -> BudgetChange:
        return msgspec.structs.replace(
            change,
            answer=self.answer,
            transitions=self.transitions,
            evicted=[a.asset_id for a, _ in self.evicted],
            freed_mb=sum(a.size_mb for a, _ in self.evicted),
            counts=counts(state),
        )


def counts(state: BudgetFold) -> Counts:
    c = ledger.of(state.book).counts
    return Counts(queued=c["queued"], delayed=c["delayed"], running=c["running"],
                  assets=len(state.shelf))  # fmt: skip


def apply(state: BudgetFold, event: Event) -> Outcome | None:
    """Fold one event; the outcome of a ``budget.state`` (None for the rest).
    Raises :class:`Refused`, having changed nothing, for a change that cannot
    be made (the service then publishes nothing)."""
    data = event.payload
    if isinstance(data, BudgetState):  # one per change: looked at first
        return decide(state, data)
    if isinstance(data, TelemetrySample):
        if state.node is None or data.node in (None, state.node):
            state.sample = metrics_of(data)
        return None
    if isinstance(data, FlagsChanged):
        state.flags = dict(sorted(apply_flags(state.flags, data).items()))
        return None
    n = getattr(data, "n", None)
    if n is None or n <= state.n:
        return None
    match data:
        case AssetRegistered():
            assets.register(state.shelf, data, event.ts)
        case AssetTouched():
            assets.touch(state.shelf, data.asset_id, event.ts)
        case ProfilerMark():
            profiler.add_mark(state.dash, data, event.ts)
        case ProfilerSpan():
            profiler.add_span(state.dash, data, event.ts)
        case ProfilerReset():
            state.dash = Dash()
        case _:
            return None
    state.n = n
    return None


def decide(state: BudgetFold, data: BudgetState) -> Outcome | None:
    """Fold one change (what :func:`apply` does with a ``budget.state``
    event, whose envelope a decision never reads): its outcome, or None for
    a change the state already holds. The service decides a change before it
    wraps the record in its envelope."""
    n = data.payload.n
    if n <= state.n:
        return None
    outcome = change(state, data)
    state.n = n
    return outcome


def change(state: BudgetFold, data: BudgetState) -> Outcome:
    c, now, book = data.payload, data.timestamp, state.book
    trigger, n = data.trigger, c.n
    started = None  # refusals come first, before anything changes
    if trigger == "job.started":
        started = admission.start(book, c.job_id or "", now, n)
    if trigger == "job.finished" and c.job_id not in book.jobs:
        raise Refused(404, "unknown", f"unknown job {c.job_id!r} (not registered, or finished)")
    if c.inputs.limits is not None:
        book.limits, book.limits_set = c.inputs.limits, True
    if c.inputs.enforce is not None:
        book.enforce = c.inputs.enforce
    if c.inputs.metrics is not None:
        admission.set_metrics(book, c.inputs.metrics)
    out = Outcome()
    match trigger:
        case "job.registered":
            job_id = c.job_id or ""
            perf = c.perf or Perf()
            admission.add(book, Job(job_id=job_id, job_type=c.job_type or "job", perf=perf,
                                    state="delayed", code="new", reason="", registered=now,
                                    since=now))  # fmt: skip
        case "job.started" if started is not None:
            out.transitions.append(started)
        case "job.finished":
            out.transitions.append(admission.finish(book, c.job_id or "", c.status or "", now, n))
        case "asset.evicted":
            out.requested = True
            chosen = assets.evict_lru(state.shelf, book, c.target_mb or 0, c.device, now)
            out.evicted = [(a, f"requested: evict {c.target_mb} MB, least recently used first")
                           for a in chosen]  # fmt: skip
    shelf = state.shelf
    if trigger != "job.started" and (shelf or admission.waiting(book)):
        # with no job waiting and no asset to evict there is nothing to decide
        now_held = admission.held(book, assets.unseen(shelf, book) if shelf else {})
        if book.enforce and shelf:  # pressure evicts assets: none, nothing to do
            pressed = assets.pressure(shelf, book, now_held, now)
            if pressed:
                out.evicted.extend(pressed)
                now_held = admission.held(book, assets.unseen(state.shelf, book))
        out.transitions.extend(admission.evaluate(book, now, n, now_held, new=c.job_id))
    out.answer = _answer(trigger, c.job_id, out.transitions, n)
    return out


def _answer(trigger: str, job_id: str | None, ts: list[Transition], n: int) -> JobAnswer | None:
    if trigger not in ("job.registered", "job.started", "job.finished"):
        return None
    mine = [t for t in ts if t.job_id == job_id]
    own = mine[0] if trigger != "job.registered" else mine[-1]
    others = [t for t in ts if t is not own]
    return JobAnswer(job_id=own.job_id, queue_state=own.state, code=own.code,
                     reason=own.reason, n=n, transitions=others)  # fmt: skip


# -- replay ------------------------------------------------------------------------


def replay(events: Iterable[Event]) -> tuple[BudgetFold, list[str]]:
    """Fold ``events`` (in log order) and compare every recorded decision with
    the one the fold makes; returns the state and one line per mismatch."""
    state = BudgetFold()
    problems: list[str] = []
    for event in events:
        data = event.payload
        if not isinstance(data, BudgetState):
            apply(state, event)
            continue
        try:
            outcome = apply(state, event)
        except Refused as e:
            problems.append(f"change {data.payload.n}: refused on replay: {e.reason}")
            continue
        if outcome is None:
            continue
        again = outcome.record(data.payload, state)
        if msgspec.json.encode(again) != msgspec.json.encode(data.payload):
            problems.append(
                f"change {data.payload.n} ({data.trigger}): recorded "
                f"{msgspec.json.encode(data.payload).decode()[:400]} but replay decides "
                f"{msgspec.json.encode(again).decode()[:400]}"
            )
    return state, problems


# -- as a projection (gpuroute replay --projection budget, snapshots) ---------------


class BudgetProjection:
    """``node``: the node whose telemetry is read (None: any)."""

    name = "budget"
    type_prefix: str | None = None
    version = 1
    latest_types = ("telemetry.sampled",)
    """Only the newest sample of its node is kept (``sample``; no fold reads it):
    a start reads that one, not every sample (``runtime/follower.py``, "Latest wins")."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node

    def takes_latest(self, event: Event) -> bool:
        data = event.payload
        return isinstance(data, TelemetrySample) and (
            self.node is None or data.node in (None, self.node)
        )

    def initial(self) -> BudgetFold:
        return BudgetFold(node=self.node)

    def apply(self, state: BudgetFold, event: Event) -> BudgetFold:
        try:
            apply(state, event)
        except Refused:
            pass  # a recorded change the fold refuses: replay() names it
        return state

    def to_builtins(self, state: BudgetFold) -> Any:
        """Jobs and assets as lists: their order is the line and the LRU order."""
        data: dict[str, Any] = msgspec.to_builtins(state)
        data["book"]["jobs"] = list(data["book"]["jobs"].values())
        data["shelf"] = list(data["shelf"].values())
        data["dash"]["spans"] = list(data["dash"]["spans"].values())
        return data

    def from_builtins(self, data: Any) -> BudgetFold:
        if not isinstance(data, dict):
            raise ValueError("a budget snapshot is an object")
        data = dict(data)
        book = dict(data.get("book") or {})
        book["jobs"] = {j["job_id"]: j for j in book.get("jobs") or []}
        data["book"] = book
        data["shelf"] = {a["asset_id"]: a for a in data.get("shelf") or []}
        dash = dict(data.get("dash") or {})
        dash["spans"] = {f"{s['category']}\x00{s['name']}": s for s in dash.get("spans") or []}
        data["dash"] = dash
        return msgspec.convert(data, BudgetFold)
