"""The held sums and state counts kept in the book's ledger equal a fresh
recount after any sequence of changes, and survive copies and snapshots."""

from __future__ import annotations

import copy
import random

import msgspec
import pytest

from schemas.budget import BudgetLimits, Metrics, Perf
from services.budget import admission, ledger
from services.budget.admission import Book, Job
from services.budget.errors import Refused
from services.budget.fold import BudgetFold, BudgetProjection


def recounted(book: Book, unseen: dict[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    counts = {"queued": 0, "delayed": 0, "running": 0}
    for job in book.jobs.values():
        counts[job.state] += 1
    return ledger.recount(book, admission.bases(book, unseen)), counts


def step(book: Book, rng: random.Random, now: float, n: int) -> bool:
    """One random change, as the fold makes them; whether it was a new sample."""
    what = rng.random()
    ids = list(book.jobs)
    if what < 0.4 or not ids:
        perf = Perf(cpu_percent=rng.choice([0.0, 0.1, 0.3, 12.5, 1 / 3]),
                    ram_mb=rng.randrange(0, 4000), vram_mb=rng.randrange(0, 9000))  # fmt: skip
        job = Job(job_id=f"j{n}", job_type="t", perf=perf, state="delayed", code="new",
                  reason="", registered=now, since=now)  # fmt: skip
        admission.add(book, job)
    elif what < 0.65:
        try:
            admission.start(book, rng.choice(ids), now, n)
        except Refused:
            pass
    elif what < 0.9:
        admission.finish(book, rng.choice(ids), "complete", now, n)
    else:
        sample = Metrics(sample_id=f"s{n}", ts=now - rng.choice([0, 5, 50]),
                         cpu_percent=rng.uniform(0, 60), ram_used_mb=rng.randrange(0, 9000),
                         vram_used_mb=rng.randrange(0, 9000))  # fmt: skip
        admission.set_metrics(book, sample)
    unseen = {"vram": float(rng.choice([0, 700])), "ram": 0.0}
    admission.evaluate(book, now, n, admission.held(book, unseen))
    return what >= 0.9 and bool(ids)


def assert_line(book: Book, kept: ledger.Ledger) -> None:
    """The ledger's line is the book's: places increase along it, the waiting
    jobs in its order, the queued ones' places sorted."""
    places = [kept.order[job_id] for job_id in book.jobs]
    assert places == sorted(places) and len(kept.order) == len(book.jobs)
    assert list(kept.delayed) == [i for i, j in book.jobs.items() if j.state == "delayed"]
    assert kept.queued == [kept.order[i] for i, j in book.jobs.items() if j.state == "queued"]


@pytest.mark.parametrize("seed", range(20))
def test_the_ledger_equals_a_recount_after_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    book = Book(limits=BudgetLimits(max_vram_mb=20000, max_mem_mb=16000, max_cpu_percent=40,
                                    max_running_jobs=6, max_queue_depth=12),
                enforce=True)  # fmt: skip
    now = 1000.0
    kept = ledger.of(book)
    for n in range(1, 400):
        now += rng.choice([0.0, 0.5, 3.0])
        if step(book, rng, now, n):
            kept = ledger.of(book)  # a new sample rebuilds it
        assert ledger.of(book) is kept, "kept in step, never rebuilt behind a change"
        assert_line(book, kept)
        for unseen in ({"vram": 0.0, "ram": 0.0}, {"vram": 700.0, "ram": 30.0}):
            sums, counts = recounted(book, unseen)
            assert admission.held(book, unseen) == sums, f"seed {seed} change {n}"
            assert admission.counts(book) == counts, f"seed {seed} change {n}"


def test_fractions_add_up_exactly_whatever_the_order() -> None:
    """Ten jobs of 0.1% CPU hold 1%, not 0.9999999999999999%, and taking one
    out leaves exactly what adding the other nine gives."""
    book = Book(limits=BudgetLimits(max_cpu_percent=100, max_running_jobs=20), enforce=True)
    for i in range(10):
        admission.add(book, Job(job_id=f"j{i}", job_type="t", perf=Perf(cpu_percent=0.1),
                                state="delayed", code="new", reason="", registered=0,
                                since=0))  # fmt: skip
    admission.evaluate(book, 0, 1, admission.held(book, {}))
    assert admission.held(book, {})["cpu"] == 1.0
    admission.finish(book, "j3", "complete", 1, 2)
    assert admission.held(book, {})["cpu"] == 0.9 == recounted(book, {})[0]["cpu"]


def test_a_copy_or_a_snapshot_rebuilds_the_ledger_it_does_not_carry() -> None:
    state = BudgetFold()
    book = state.book
    book.limits, book.enforce = BudgetLimits(max_running_jobs=5), True
    rng = random.Random(7)
    for n in range(1, 60):
        step(book, rng, 1000.0 + n, n)
    expected = (admission.held(book, {}), admission.counts(book))
    projection = BudgetProjection()
    restored = projection.from_builtins(
        msgspec.json.decode(msgspec.json.encode(projection.to_builtins(state)))
    )
    for other in (copy.deepcopy(book), restored.book):
        assert "_ledger" not in other.__dict__  # never encoded, never copied
        assert (admission.held(other, {}), admission.counts(other)) == expected
    assert b"_ledger" not in msgspec.json.encode(state)


def test_jobs_ahead_are_the_queued_before_it_and_the_waiting_visited_before_it() -> None:
    """``max_queue_depth`` counts the queued jobs before a job in line and the
    waiting ones before it (admission visits only the waiting jobs)."""
    book = Book(limits=BudgetLimits(max_vram_mb=1000, max_queue_depth=2, max_running_jobs=10),
                enforce=True)  # fmt: skip

    def register(job_id: str, vram: int, n: int) -> tuple[str, str]:
        admission.add(book, Job(job_id=job_id, job_type="t", perf=Perf(vram_mb=vram),
                                state="delayed", code="new", reason="", registered=n,
                                since=n))  # fmt: skip
        admission.evaluate(book, n, n, admission.held(book, {}), new=job_id)
        return book.jobs[job_id].state, book.jobs[job_id].code

    assert register("a", 600, 1) == ("queued", "fits")
    assert register("b", 600, 2) == ("delayed", "vram")
    assert register("c", 100, 3) == ("delayed", "queue_depth")
    assert book.jobs["c"].reason == ("queue_depth: 2 jobs waiting ahead of it, max_queue_depth 2")
    admission.finish(book, "a", "complete", 4, 4)
    admission.evaluate(book, 4, 4, admission.held(book, {}))
    assert [(j.job_id, j.state) for j in book.jobs.values()] == [("b", "queued"), ("c", "queued")]
