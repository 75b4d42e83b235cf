"""Admission: which waiting jobs may go, and why the others wait. Pure.

A job is ``delayed`` (waiting, with a reason), ``queued`` (admitted: it holds
its declared ``perf`` and one of ``max_running_jobs`` slots, and may start
now) or ``running``. Jobs are evaluated in registration order (first come,
first served among jobs that fit): a small job may pass a big one that does
not fit, but a delayed job older than ``starvation_age_s`` that does not fit
is not passed again (the jobs behind it wait with the code ``behind``).

What a resource holds (``held``): the telemetry's figure, less what finished
or was evicted after that sample was taken (``Credit``), plus what admitted
jobs and registered assets declare that the sample cannot show yet (a job not
started before the sample, an asset registered after it). So two jobs
registered in the same second never both take the last free VRAM, and a
finished job frees its share at once, before the next sample. Time is the
event's timestamp: nothing here reads a clock.

Reason codes: ``fits``, ``budgets_off``, ``vram``, ``ram``, ``cpu``,
``running_jobs``, ``queue_depth``, ``behind``, ``infeasible`` (a request above
the limit itself: refused, never left waiting).
"""

from __future__ import annotations

import bisect
import functools
import math

import msgspec

from schemas.budget import BudgetLimits, Metrics, Perf, QueueState, Transition
from services.budget import ledger
from services.budget.errors import Refused

RESOURCES = ledger.RESOURCES
LIMIT_NAME = {"vram": "max_vram_mb", "ram": "max_mem_mb", "cpu": "max_cpu_percent"}
WORD = {"vram": "VRAM", "ram": "RAM", "cpu": "CPU"}


class Job(msgspec.Struct, kw_only=True):
    job_id: str
    job_type: str
    perf: Perf
    state: QueueState
    code: str
    reason: str
    registered: float
    since: float
    started: float | None = None


class Credit(msgspec.Struct, array_like=True):
    """Declared use that ended at ``ts``, still inside the latest sample's figure."""

    ts: float
    vram: float
    ram: float
    cpu: float


class Book(msgspec.Struct, kw_only=True, dict=True):
    """``jobs`` in registration order (the order of the line); changed only
    through this module, which keeps the :mod:`~services.budget.ledger` (held
    sums and state counts, in ``__dict__``: never encoded) in step."""

    limits: BudgetLimits = BudgetLimits()
    limits_set: bool = False
    """A change recorded limits (else the service records the config's first)."""
    enforce: bool = False
    metrics: Metrics | None = None
    jobs: dict[str, Job] = {}
    credits: list[Credit] = []


def demand(perf: Perf, resource: str) -> float:
    if resource == "vram":
        return perf.vram_mb
    if resource == "ram":
        return perf.ram_mb
    return perf.cpu_percent


def limit_of(limits: BudgetLimits, resource: str) -> float:
    value: float = getattr(limits, LIMIT_NAME[resource])
    return value


_caps: tuple[BudgetLimits | None, tuple[float, float, float]] = (None, (0.0, 0.0, 0.0))


def caps(limits: BudgetLimits) -> tuple[float, float, float]:
    """Each resource's limit, in ``RESOURCES`` order (``limit_of`` of each);
    remembered for the last limits object (hashing one costs more than this)."""
    global _caps
    known = _caps  # read once: another thread may replace it meanwhile
    if known[0] is not limits:
        known = _caps = (limits, (float(limits.max_vram_mb), float(limits.max_mem_mb),
                                  float(limits.max_cpu_percent)))  # fmt: skip
    return known[1]


def in_use(metrics: Metrics | None, resource: str) -> float | None:
    if metrics is None:
        return None
    if resource == "vram":
        return metrics.vram_used_mb
    if resource == "ram":
        return metrics.ram_used_mb
    return metrics.cpu_percent


def shown(book: Book, ts: float | None) -> bool:
    """Whether the latest sample can show what began at ``ts``."""
    return ledger.shown(book.metrics, ts)


def set_metrics(book: Book, metrics: Metrics) -> None:
    book.metrics = metrics
    ledger.reset(book)  # the sample may show jobs it did not show before
    book.credits = [c for c in book.credits if c.ts > metrics.ts]


def credit(book: Book, ts: float, vram: float = 0, ram: float = 0, cpu: float = 0) -> None:
    book.credits.append(Credit(float(ts), float(vram), float(ram), float(cpu)))


def held(book: Book, unseen_assets: dict[str, float]) -> dict[str, float]:
    """What each resource holds now (see the module docstring): the sample's
    base plus the admitted jobs it cannot show, summed exactly and rounded
    once (``ledger``; equal to ``ledger.recount(book, bases(...))``)."""
    total = ledger.of(book).total
    base = bases(book, unseen_assets)
    # in RESOURCES order, as a comprehension over it would give
    return {"vram": total(base["vram"], 0), "ram": total(base["ram"], 1),
            "cpu": total(base["cpu"], 2)}  # fmt: skip


def bases(book: Book, unseen_assets: dict[str, float]) -> dict[str, float]:
    """Per resource: the sample's figure less credits, plus unseen assets."""
    out: dict[str, float] = {}
    metrics = book.metrics
    for r in RESOURCES:
        used = None if metrics is None else in_use(metrics, r)
        base = 0.0
        if used is not None:
            base = max(0.0, used - sum(getattr(c, r) for c in book.credits))
        out[r] = base + unseen_assets.get(r, 0.0)
    return out


def waiting(book: Book) -> bool:
    """Whether any job is delayed (a registered one is, until it is evaluated)."""
    return bool(ledger.of(book).delayed)


def counts(book: Book) -> dict[str, int]:
    """Jobs per state (``queued``, ``delayed``, ``running``)."""
    return dict(ledger.of(book).counts)


def num(value: float) -> str:
    """``value`` as the reasons print it: whole numbers without a decimal,
    others to one decimal (``f"{value:.0f}"`` or ``f"{value:.1f}"``)."""
    v = float(value)
    return _num(v) if v else f"{v:.0f}"  # zero keeps its sign ("-0"): 0.0 == -0.0 in a cache


@functools.lru_cache(maxsize=4096)
def _num(v: float) -> str:
    """:func:`num` of a non-zero float, remembered: the same figures recur in
    every reason (a job's demands, the free MB), and formatting a float costs
    more than looking it up."""
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


UNIT = {"vram": " MB", "ram": " MB", "cpu": "%"}


def infeasible(job: Job, limits: BudgetLimits) -> str | None:
    for r, need, cap in zip(RESOURCES, ledger.demands(job.perf), caps(limits), strict=True):
        if need > cap:
            u = UNIT[r]
            return (
                f"infeasible: {num(need)}{u} {WORD[r]} requested, above {LIMIT_NAME[r]} "
                f"{num(cap)} itself: it can never run under these limits"
            )
    return None


def _holders(book: Book, resource: str) -> str:
    running = [j for j in book.jobs.values() if j.state == "running"]
    queued = [j for j in book.jobs.values() if j.state == "queued"]
    u = UNIT[resource]
    parts = [
        f"{len(js)} job{'s' if len(js) != 1 else ''} {what} "
        f"{num(sum(demand(j.perf, resource) for j in js))}{u}"
        for js, what in ((running, "running hold"), (queued, "queued reserve"))
        if js
    ]
    used = in_use(book.metrics, resource)
    if used is not None and book.metrics is not None:
        parts.append(f"telemetry {book.metrics.sample_id} shows {num(used)}{u} in use")
    return "; ".join(parts) or "nothing else holds any"


def verdict(
    job: Job, book: Book, now_held: dict[str, float], slots_taken: int, ahead: int
) -> tuple[str, str] | None:
    """Why ``job`` must wait, or None when it may go. ``slots_taken``: queued
    plus running jobs; ``ahead``: waiting jobs before it in line."""
    limits = book.limits
    for r, need, cap in zip(RESOURCES, ledger.demands(job.perf), caps(limits), strict=True):
        free = cap - now_held[r]
        if need > 0 and need > free:
            u = UNIT[r]
            return r, (
                f"{r}: {num(need)}{u} requested, {num(max(free, 0))}{u} free under "
                f"{LIMIT_NAME[r]} {num(cap)} ({_holders(book, r)})"
            )
    if slots_taken >= limits.max_running_jobs:
        return "running_jobs", (
            f"running_jobs: {slots_taken} jobs running or queued, max_running_jobs "
            f"{limits.max_running_jobs}"
        )
    if ahead >= limits.max_queue_depth:
        return "queue_depth", (
            f"queue_depth: {ahead} jobs waiting ahead of it, max_queue_depth "
            f"{limits.max_queue_depth}"
        )
    return None


def fits_reason(job: Job, book: Book, now_held: dict[str, float]) -> tuple[str, str]:
    if not book.enforce:
        return "budgets_off", (
            "budgets_off: budgets are off (features.enable_perf and "
            "features.enable_perf_budgets are false): queued without checks"
        )
    vram, ram, cpu = caps(book.limits)
    free = (vram - now_held["vram"], ram - now_held["ram"], cpu - now_held["cpu"])
    return "fits", _fits(ledger.demands(job.perf), free)


@functools.lru_cache(maxsize=4096)
def _fits(needs: tuple[float, float, float], free: tuple[float, float, float]) -> str:
    """The sentence of a job that fits, remembered: the same demands and free
    figures recur. Only a resource with a demand above 0 is printed, and its
    free figure is then above 0 too, so no -0.0 reaches a cached sentence."""
    parts = []
    for r, need, left in zip(RESOURCES, needs, free, strict=True):
        if need > 0:
            u = UNIT[r]
            parts.append(f"{num(need)}{u} {WORD[r]} of {num(left)}{u} free")
    return "fits: " + (", ".join(parts) if parts else "it declares no CPU, RAM or VRAM")


def add(book: Book, job: Job) -> None:
    """Put a new job at the end of the line."""
    ledger.insert(book, job)


def evaluate(
    book: Book, now: float, n: int, now_held: dict[str, float], new: str | None = None
) -> list[Transition]:
    """Admit what may go, in line order; reject what can never run; update the
    reasons of what waits. ``new``: a job just registered (its transition is
    reported even when it stays delayed). Mutates ``book`` and ``now_held``."""
    transitions: list[Transition] = []
    kept = ledger.of(book)
    taken = kept.counts["queued"] + kept.counts["running"]
    blocker: Job | None = None
    queued_places = list(kept.queued)  # the queued jobs as the visit starts
    passed = 0  # waiting jobs visited (and not rejected)
    for job_id in list(kept.delayed):
        job = book.jobs[job_id]
        ahead = bisect.bisect_left(queued_places, kept.order[job_id]) + passed
        previous: QueueState | None = None if job.job_id == new else "delayed"
        bad = infeasible(job, book.limits) if book.enforce else None
        if bad is not None:
            ledger.remove(book, job)
            transitions.append(_t(n, job, "rejected", previous, "infeasible", bad))
            continue
        why = verdict(job, book, now_held, taken, ahead) if book.enforce else None
        if why is None and blocker is not None:
            age = now - blocker.registered
            why = (
                "behind",
                (
                    f"behind: job {blocker.job_id} has waited {age:.1f} s for {blocker.code} "
                    f"(over starvation_age_s {num(book.limits.starvation_age_s)}) and goes first"
                ),
            )
        if why is None:
            job.code, job.reason = fits_reason(job, book, now_held)
            ledger.update(book, job, state="queued", since=now)
            for r, need in zip(RESOURCES, ledger.demands(job.perf), strict=True):
                now_held[r] += need
            taken += 1
            transitions.append(_t(n, job, "queued", previous, job.code, job.reason))
        else:
            job.code, job.reason = why
            if previous is None:
                transitions.append(_t(n, job, "delayed", None, job.code, job.reason))
            starving = now - job.registered > book.limits.starvation_age_s
            if blocker is None and starving and why[0] != "behind":
                blocker = job
        passed += 1
    return transitions


def _t(
    n: int, job: Job, state: QueueState, previous: QueueState | None, code: str, reason: str
) -> Transition:
    return Transition(
        n=n, job_id=job.job_id, state=state, previous=previous, code=code, reason=reason
    )


def start(book: Book, job_id: str, now: float, n: int) -> Transition:
    """queued -> running; :class:`Refused` (nothing changed) otherwise."""
    job = book.jobs.get(job_id)
    if job is None:
        raise Refused(404, "unknown", f"unknown job {job_id!r} (not registered, or finished)")
    if job.state == "delayed":
        raise Refused(409, job.code, f"job {job_id!r} is delayed: {job.reason}")
    if job.state == "running":
        raise Refused(409, "running", f"job {job_id!r} is already running")
    running = ledger.of(book).counts["running"]
    if book.enforce and running >= book.limits.max_running_jobs:
        raise Refused(
            409,
            "running_jobs",
            f"running_jobs: {running} jobs running, max_running_jobs "
            f"{book.limits.max_running_jobs}",
        )
    ledger.update(book, job, state="running", since=now, started=now)
    job.code, job.reason = "started", f"started: holds {_declared(job.perf)}"
    return _t(n, job, "running", "queued", job.code, job.reason)


def finish(book: Book, job_id: str, status: str, now: float, n: int) -> Transition:
    """Forget the job; what the latest sample shows of it is credited back."""
    job = book.jobs.get(job_id)
    if job is None:
        raise Refused(404, "unknown", f"unknown job {job_id!r} (not registered, or finished)")
    ledger.remove(book, job)
    if job.state == "running" and shown(book, job.started):
        p = job.perf
        credit(book, now, vram=p.vram_mb, ram=p.ram_mb, cpu=p.cpu_percent)
    reason = f"{status}: job {job_id!r} ended ({job.state}); frees {_declared(job.perf)}"
    return _t(n, job, "finished", job.state, status, reason)


def _declared(perf: Perf) -> str:
    needs = ledger.demands(perf)
    if 0.0 in needs and any(math.copysign(1.0, x) < 0 for x in needs):
        return _holds.__wrapped__(needs)  # num prints -0.0 as "-0": a cache key cannot tell
    return _holds(needs)


@functools.lru_cache(maxsize=4096)
def _holds(needs: tuple[float, float, float]) -> str:
    """What a job declares, remembered (never for a -0.0: see ``_declared``)."""
    vram, ram, cpu = needs
    return f"{num(vram)} MB VRAM, {num(ram)} MB RAM, {num(cpu)}% CPU"
