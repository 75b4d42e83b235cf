"""The profiler: the dashboard folded from marks and spans (the recorder of a
service's own hot paths is ``services/runtime/profiling.py``).

:class:`Dash` is pure state: spans aggregated per (category, name) — at most
``MAX_NAMES`` of them, later names are counted under ``(other)`` — totals per
category, and the newest ``RECENT`` marks. :func:`dashboard` shapes it for
charting. Memory is whatever the span reported (``rss`` or ``tracemalloc``
from the client module; ``none`` for hot paths, where reading RSS would cost
more than the code timed).
"""

from __future__ import annotations

import msgspec

from schemas.budget import (
    CategoryStats,
    Dashboard,
    MarkView,
    ProfilerMark,
    ProfilerSpan,
    SpanStats,
)

MAX_NAMES = 1000
RECENT = 200
OTHER = "(other)"


class Agg(msgspec.Struct, kw_only=True):
    name: str
    category: str
    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    memory_kb: int = 0
    max_memory_kb: int = 0

    def stats(self) -> SpanStats:
        return SpanStats(
            name=self.name,
            category=self.category,
            count=self.count,
            total_ms=round(self.total_ms, 3),
            avg_ms=round(self.total_ms / self.count, 3) if self.count else 0.0,
            max_ms=round(self.max_ms, 3),
            memory_kb=self.memory_kb,
            max_memory_kb=self.max_memory_kb,
        )


class Cat(msgspec.Struct, kw_only=True):
    spans: int = 0
    marks: int = 0
    total_ms: float = 0.0
    memory_kb: int = 0


class Dash(msgspec.Struct, kw_only=True):
    spans: dict[str, Agg] = {}
    categories: dict[str, Cat] = {}
    recent: list[MarkView] = []
    n_spans: int = 0
    n_marks: int = 0
    since: float | None = None


def add_mark(dash: Dash, mark: ProfilerMark, ts: float) -> None:
    dash.since = ts if dash.since is None else dash.since
    dash.n_marks += 1
    dash.categories.setdefault(mark.category, Cat()).marks += 1
    dash.recent.append(MarkView(name=mark.name, category=mark.category, ts=ts,
                                metadata=mark.metadata))  # fmt: skip
    if len(dash.recent) > RECENT:
        del dash.recent[: len(dash.recent) - RECENT]


def add_span(dash: Dash, span: ProfilerSpan, ts: float) -> None:
    dash.since = ts if dash.since is None else dash.since
    dash.n_spans += span.count
    key = f"{span.category}\x00{span.name}"
    agg = dash.spans.get(key)
    if agg is None:
        if len(dash.spans) >= MAX_NAMES:
            key = f"{span.category}\x00{OTHER}"
            agg = dash.spans.get(key)
        if agg is None:
            name = span.name if len(dash.spans) < MAX_NAMES else OTHER
            agg = dash.spans[key] = Agg(name=name, category=span.category)
    longest = span.max_ms if span.max_ms is not None else span.wall_ms / span.count
    agg.count += span.count
    agg.total_ms += span.wall_ms
    agg.max_ms = max(agg.max_ms, longest)
    agg.memory_kb += span.memory_delta_kb
    agg.max_memory_kb = max(agg.max_memory_kb, span.memory_delta_kb)
    cat = dash.categories.setdefault(span.category, Cat())
    cat.spans += span.count
    cat.total_ms += span.wall_ms
    cat.memory_kb += span.memory_delta_kb


def dashboard(dash: Dash, limit: int) -> Dashboard:
    stats = [a.stats() for a in dash.spans.values()]
    by_time = sorted(stats, key=lambda s: (-s.total_ms, s.category, s.name))
    by_memory = sorted(stats, key=lambda s: (-s.max_memory_kb, s.category, s.name))
    cats = [
        CategoryStats(category=name, spans=c.spans, marks=c.marks,
                      total_ms=round(c.total_ms, 3), memory_kb=c.memory_kb)
        for name, c in dash.categories.items()
    ]  # fmt: skip
    cats.sort(key=lambda c: (-c.total_ms, c.category))
    return Dashboard(
        top_time=by_time[:limit],
        top_memory=[s for s in by_memory if s.max_memory_kb > 0][:limit],
        categories=cats[:limit],
        recent=dash.recent[::-1][:limit],
        spans=dash.n_spans,
        marks=dash.n_marks,
        since=dash.since,
    )
