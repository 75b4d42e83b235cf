"""What admitted jobs hold and how many jobs are in each state, kept as they change.

``admission.held`` used to sum every tracked job's ``perf`` on every change
(about 0.26 ms of each change's 0.6 ms with ~100 jobs in a bench profile),
and the state counts were counted the same way. The :class:`Ledger` keeps both
as jobs enter, change and leave: ``admission`` adds and removes jobs with
:func:`insert` and :func:`remove` and changes them with :func:`update`.

Exact: the declared demands are summed as integers in units of 2**-1074 (every
float is a whole multiple of it), so removing a job takes away exactly what
adding it put in, whatever the order; ``total`` rounds once, like
``math.fsum`` over the same values, which is what :func:`recount` (the
reference the tests compare with) computes. A job is counted while it is
admitted (queued or running) and the latest telemetry sample cannot show it
yet (:func:`shown`); a new sample changes that for many jobs at once, so it
rebuilds the ledger (``admission.set_metrics``).

The ledger lives in the book's ``__dict__`` (``Book`` is a ``dict=True``
struct): it is never encoded, a copy or a decoded snapshot has none, and
:func:`of` rebuilds it then, or when the jobs dict it was built for was
replaced (a change made behind its back is a bug: the tests check that the
same ledger stays in step through every kind of change).
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.budget import Metrics, Perf
    from services.budget.admission import Book, Job

RESOURCES = ("vram", "ram", "cpu")
SCALE = 1074
"""Exponent of the smallest float step: ``x * 2**SCALE`` is whole for every float."""
ONE = 1 << SCALE


@functools.lru_cache(maxsize=4096)
def exact(x: float) -> int:
    """``x`` in units of ``2**-SCALE``, without rounding."""
    n, d = float(x).as_integer_ratio()
    return n << (SCALE - d.bit_length() + 1)


def demands(perf: Perf) -> tuple[float, float, float]:
    """(vram, ram, cpu) that ``perf`` declares, in ``RESOURCES`` order."""
    return float(perf.vram_mb), float(perf.ram_mb), float(perf.cpu_percent)


@functools.lru_cache(maxsize=4096)
def exact_demands(perf: Perf) -> tuple[int, int, int]:
    """:func:`demands` in units of ``2**-SCALE`` (equal ``perf`` give equal
    sums: ``-0.0`` and ``0.0`` are both 0)."""
    vram, ram, cpu = demands(perf)
    return exact(vram), exact(ram), exact(cpu)


def shown(metrics: Metrics | None, ts: float | None) -> bool:
    """Whether the sample ``metrics`` can show what began at ``ts``."""
    return ts is not None and metrics is not None and ts <= metrics.ts


def counted(book: Book, job: Job) -> bool:
    """Whether ``job``'s demand is added to what the sample shows."""
    return job.state != "delayed" and not shown(book.metrics, job.started)


class Ledger:
    """Exact demand sums of the counted jobs, the count of each state, and the
    line: ``order`` (each job's place, increasing along ``book.jobs``),
    ``delayed`` (their ids in line order) and ``queued`` (their places, sorted),
    so that admission visits the waiting jobs only (``admission.evaluate``)."""

    __slots__ = ("counts", "delayed", "jobs", "next", "order", "queued", "sums")

    def __init__(self, book: Book) -> None:
        self.jobs = book.jobs
        self.sums = [0, 0, 0]
        self.counts = {"queued": 0, "delayed": 0, "running": 0}
        self.order = {job_id: i for i, job_id in enumerate(book.jobs)}
        self.next = len(book.jobs)
        self.delayed: dict[str, None] = {}
        self.queued: list[int] = []
        for job in book.jobs.values():
            self.add(book, job, 1)

    def add(self, book: Book, job: Job, sign: int) -> None:
        """Count ``job`` in (``sign`` 1) or out (-1). A job is delayed only from
        its registration on (it never goes back), so ``delayed`` stays in line order."""
        state = job.state
        self.counts[state] += sign
        if state == "delayed":
            if sign > 0:
                self.delayed[job.job_id] = None
            else:
                del self.delayed[job.job_id]
        elif state == "queued":
            place = self.order[job.job_id]
            if sign > 0:
                bisect.insort(self.queued, place)
            else:
                del self.queued[bisect.bisect_left(self.queued, place)]
        if counted(book, job):
            vram, ram, cpu = exact_demands(job.perf)
            sums = self.sums
            if sign > 0:  # no multiplication: the sums are ~1,100-bit ints
                sums[0] += vram
                sums[1] += ram
                sums[2] += cpu
            else:
                sums[0] -= vram
                sums[1] -= ram
                sums[2] -= cpu

    def total(self, base: float, i: int) -> float:
        """``base`` plus the counted demands of resource ``i``, rounded once."""
        return (exact(base) + self.sums[i]) / ONE


def of(book: Book) -> Ledger:
    """The book's ledger, rebuilt when it has none or its jobs dict was swapped."""
    ledger: Ledger | None = book.__dict__.get("_ledger")
    if ledger is None or ledger.jobs is not book.jobs:
        ledger = book.__dict__["_ledger"] = Ledger(book)
    return ledger


def insert(book: Book, job: Job) -> None:
    """Add ``job`` to the end of the line."""
    ledger = of(book)
    book.jobs[job.job_id] = job
    ledger.order[job.job_id] = ledger.next
    ledger.next += 1
    ledger.add(book, job, 1)


def remove(book: Book, job: Job) -> None:
    """Take ``job`` out of the book."""
    ledger = of(book)
    ledger.add(book, job, -1)
    del book.jobs[job.job_id], ledger.order[job.job_id]


def update(book: Book, job: Job, **fields: Any) -> None:
    """Set ``fields`` of ``job`` (one in ``book.jobs``), counting it anew."""
    ledger = of(book)
    ledger.add(book, job, -1)
    for name, value in fields.items():
        setattr(job, name, value)
    ledger.add(book, job, 1)


def reset(book: Book) -> None:
    """Rebuild at the next use (a new sample shows other jobs)."""
    book.__dict__.pop("_ledger", None)


def recount(book: Book, bases: dict[str, float]) -> dict[str, float]:
    """The reference: every counted job summed afresh (``math.fsum``)."""
    jobs = [j for j in book.jobs.values() if counted(book, j)]
    return {
        r: math.fsum([bases[r], *(demands(j.perf)[i] for j in jobs)])
        for i, r in enumerate(RESOURCES)
    }
