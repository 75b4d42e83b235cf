"""The budget's request/reply endpoints: one handler per ``nats.micro`` subject.

Queries (snapshot, poll, dashboard, health) answer from the state; commands
queue a build on the service's writer (``service.py``) and answer once their
events are acknowledged. A command's build is made by a ``_*_build(request)``
method, so the service can queue it straight from the subscription's callback
(``Make``) as well as from the handler (while loading, or at the in-flight
bound). Every handler answers 503 "still loading" until the state is rebuilt.
Unknown job or asset ids are 404 naming the id; a refused start is 409 with
the reason; 429 past ``MAX_JOBS``/``MAX_ASSETS``; the dashboard is 409 naming
the flags while they are off. Subjects and types: ``schemas/budget.py``.

:class:`BudgetEndpoints` is mixed into
:class:`~services.budget.service.BudgetService`, which provides the state,
the writer (``_submit``) and the change builders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from schemas import Event
from schemas.budget import (
    APPLY,
    ASSET_EVICT,
    ASSET_REGISTER,
    ASSET_TOUCH,
    DASHBOARD,
    FINISH,
    HEALTH,
    MARK,
    MAX_ASSETS,
    MAX_JOBS,
    POLL,
    REFRESH,
    REGISTER,
    RESET,
    SNAPSHOT,
    SPAN,
    START,
    AssetAnswer,
    AssetEvict,
    AssetRef,
    AssetRegister,
    AssetRegistered,
    AssetTouched,
    BudgetLimits,
    BudgetSnapshot,
    Dashboard,
    DashboardQuery,
    Evicted,
    Health,
    JobAnswer,
    JobFinish,
    JobRef,
    JobRegister,
    JobView,
    LimitsApply,
    Mark,
    Perf,
    PerfHealth,
    Poll,
    ProfilerMark,
    ProfilerReset,
    ProfilerResetRequest,
    ProfilerSpan,
    Recorded,
    Refresh,
    Resource,
    Snapshot,
    Span,
    Transitions,
)
from schemas.flags import DEFAULTS, ENABLE_PERF, ENABLE_PERF_PROFILER_DASHBOARD
from schemas.strict import lenient
from services.budget import admission, assets, fold, profiler
from services.budget.errors import Refused
from services.budget.fold import BudgetFold
from services.runtime.bus import Bus
from services.runtime.endpoints import EndpointError
from services.runtime.follower import Follower
from services.runtime.profiling import HotPaths

Handler = Callable[[Any], Awaitable[Any]]
Build = Callable[[], tuple[list[Event], Any]]
Make = Callable[[Any], Build]
"""A command's build from its request (raises ``EndpointError`` for a bad one)."""


class BudgetEndpoints:
    """The handlers, as methods of the budget service (see the module docstring)."""

    bus: Bus
    follower: Follower[BudgetFold]
    recent: Any
    hot: HotPaths

    @property
    def state(self) -> BudgetFold:
        raise NotImplementedError

    async def _submit(self, build: Callable[[], tuple[list[Event], Any]]) -> Any:
        raise NotImplementedError

    def _changed(self, trigger: Any, **request: Any) -> tuple[list[Event], fold.Outcome]:
        raise NotImplementedError

    def _limits(self, limits: BudgetLimits, origin: Any) -> tuple[list[Event], Any]:
        raise NotImplementedError

    async def evaluate(self, trigger: Any) -> Any:
        raise NotImplementedError

    def _endpoints(self) -> list[tuple[str, str, type[Any], Handler, Make | None]]:
        """(name, subject, request type, handler, the command's build maker or None)."""
        queries: list[tuple[str, str, type[Any], Handler]] = [
            ("snapshot", SNAPSHOT, Snapshot, self.snapshot),
            ("apply", APPLY, LimitsApply, self.apply),
            ("refresh", REFRESH, Refresh, self.refresh),
            ("poll", POLL, Poll, self.poll),
            ("dashboard", DASHBOARD, DashboardQuery, self.dashboard),
            ("health", HEALTH, Health, self.health),
        ]
        commands: list[tuple[str, str, type[Any], Make]] = [
            ("register", REGISTER, JobRegister, self._register_build),
            ("start", START, JobRef, self._start_build),
            ("finish", FINISH, JobFinish, self._finish_build),
            ("asset-register", ASSET_REGISTER, AssetRegister, self._asset_register_build),
            ("asset-touch", ASSET_TOUCH, AssetRef, self._touch_build),
            ("asset-evict", ASSET_EVICT, AssetEvict, self._evict_build),
            ("mark", MARK, Mark, self._mark_build),
            ("span", SPAN, Span, self._span_build),
            ("reset", RESET, ProfilerResetRequest, self._reset_build),
        ]
        return [(*q, None) for q in queries] + [
            (name, subject, t, self._handler(make), make) for name, subject, t, make in commands
        ]

    def _handler(self, make: Make) -> Handler:
        """A command's handler when it is not taken from the callback."""

        async def handle(request: Any) -> Any:
            return await self._command(make(request))

        return handle

    async def _ready(self) -> None:
        await self.follower.require_ready("budget")

    async def _command(self, build: Callable[[], tuple[list[Event], Any]]) -> Any:
        await self._ready()
        try:
            return await self._submit(build)
        except Refused as e:
            raise EndpointError(e.status, e.reason) from None

    # -- limits and snapshot -----------------------------------------------------

    async def snapshot(self, _: Snapshot | None = None) -> BudgetSnapshot:
        await self._ready()
        state, book = self.state, self.state.book
        now_held = admission.held(book, assets.unseen(state.shelf, book))
        resources = {
            r: Resource(limit=admission.limit_of(book.limits, r), held=now_held[r],
                        free=admission.limit_of(book.limits, r) - now_held[r],
                        in_use=admission.in_use(state.sample, r))
            for r in admission.RESOURCES
        }  # fmt: skip
        jobs = [_view(j) for j in book.jobs.values()]
        return BudgetSnapshot(
            enforce=state.enforce(),
            limits=book.limits,
            metrics=state.sample,
            resources=resources,
            queued=[j.job_id for j in jobs if j.queue_state == "queued"],
            delayed=[j.job_id for j in jobs if j.queue_state == "delayed"],
            running=[j.job_id for j in jobs if j.queue_state == "running"],
            jobs=jobs,
            assets=list(state.shelf.values()),
            n=state.n,
        )

    async def apply(self, request: LimitsApply) -> BudgetSnapshot:
        await self._ready()
        given = {k: v for k, v in msgspec.structs.asdict(request).items() if v is not None}
        if not given:
            raise EndpointError(400, "no limit to change - at `$`")
        limits = msgspec.structs.replace(self.state.book.limits, **given)
        if limits != self.state.book.limits:
            await self._command(lambda: self._limits(limits, "api"))
        return await self.snapshot()

    # -- jobs --------------------------------------------------------------------

    def _register_build(self, request: JobRegister) -> Build:
        perf = _perf(request)

        def build() -> tuple[list[Event], JobAnswer]:
            state = self.state
            job = state.book.jobs.get(request.job_id)
            if job is not None:  # a retried register: the same answer, nothing new
                if job.perf != perf:
                    other = f"job {request.job_id!r} is registered with other perf"
                    raise Refused(409, "registered", other)
                return [], JobAnswer(job_id=job.job_id, queue_state=job.state, code=job.code,
                                     reason=job.reason, n=state.n)  # fmt: skip
            if len(state.book.jobs) >= MAX_JOBS:
                raise Refused(429, "full", f"the budget tracks {MAX_JOBS} jobs (MAX_JOBS): "
                                           "finish some first")  # fmt: skip
            events, outcome = self._changed("job.registered", job_id=request.job_id,
                                            job_type=request.job_type, perf=perf)  # fmt: skip
            assert outcome.answer is not None
            return events, outcome.answer

        return build

    def _start_build(self, request: JobRef) -> Build:
        return self._job_change("job.started", job_id=request.job_id)

    def _finish_build(self, request: JobFinish) -> Build:
        status = "canceled" if request.status == "cancelled" else request.status
        return self._job_change("job.finished", job_id=request.job_id, status=status)

    def _job_change(self, trigger: str, **request: Any) -> Build:
        def build() -> tuple[list[Event], JobAnswer]:
            events, outcome = self._changed(trigger, **request)
            assert outcome.answer is not None
            return events, outcome.answer

        return build

    async def refresh(self, _: Refresh) -> Transitions:
        await self._ready()
        transitions = await self.evaluate("refresh")
        return Transitions(transitions=transitions, last=self.state.n)

    async def poll(self, request: Poll) -> Transitions:
        await self._ready()
        recent = self.recent
        oldest = recent[0].n if recent else self.state.n + 1
        found = [t for t in recent if t.n > request.after]
        return Transitions(transitions=found[: request.limit], last=self.state.n,
                           more=len(found) > request.limit, oldest=oldest)  # fmt: skip

    # -- assets --------------------------------------------------------------------

    def _asset_register_build(self, request: AssetRegistered) -> Build:
        def build() -> tuple[list[Event], AssetAnswer]:
            shelf = self.state.shelf
            if request.asset_id not in shelf and len(shelf) >= MAX_ASSETS:
                raise Refused(429, "full", f"{MAX_ASSETS} assets registered (MAX_ASSETS)")
            data = msgspec.structs.replace(lenient(request), n=self.state.n + 1)
            return self._asset_event(data, request.asset_id)

        return build

    def _touch_build(self, request: AssetRef) -> Build:
        def build() -> tuple[list[Event], AssetAnswer]:
            if request.asset_id not in self.state.shelf:
                raise Refused(404, "unknown", f"unknown asset {request.asset_id!r}")
            data = AssetTouched(asset_id=request.asset_id, n=self.state.n + 1)
            return self._asset_event(data, request.asset_id)

        return build

    def _asset_event(
        self, data: AssetRegistered | AssetTouched, asset_id: str
    ) -> tuple[list[Event], AssetAnswer]:
        event = self.bus.event(data, key=asset_id)
        with self.hot.span(event.type):
            fold.apply(self.state, event)
        return [event], AssetAnswer(asset=self.state.shelf[asset_id], n=self.state.n)

    def _evict_build(self, request: AssetEvict) -> Build:
        def build() -> tuple[list[Event], Evicted]:
            events, outcome = self._changed(
                "asset.evicted", target_mb=request.target_mb, device=request.device
            )
            chosen = [a for a, reason in outcome.evicted if reason.startswith("requested")]
            freed = sum(a.size_mb for a in chosen)
            ids = [a.asset_id for a in chosen]
            return events, Evicted(evicted=ids, freed_mb=freed, n=self.state.n)

        return build

    # -- profiler ------------------------------------------------------------------

    def _mark_build(self, request: ProfilerMark) -> Build:
        return self._profiler_event(lenient(request), request.name)

    def _span_build(self, request: ProfilerSpan) -> Build:
        return self._profiler_event(lenient(request), request.name)

    def _reset_build(self, _: ProfilerResetRequest) -> Build:
        return self._profiler_event(ProfilerReset(), "profiler")

    def _profiler_event(self, data: ProfilerMark | ProfilerSpan | ProfilerReset, key: str) -> Build:
        def build() -> tuple[list[Event], Recorded]:
            event = self.bus.event(msgspec.structs.replace(data, n=self.state.n + 1), key=key)
            fold.apply(self.state, event)
            return [event], Recorded(n=self.state.n)

        return build

    async def dashboard(self, request: DashboardQuery) -> Dashboard:
        await self._ready()
        if not self.state.dashboard_on():
            raise EndpointError(
                409,
                f"the profiler dashboard is off: turn on {ENABLE_PERF} or "
                f"{ENABLE_PERF_PROFILER_DASHBOARD} (PUT /api/flags)",
            )
        return profiler.dashboard(self.state.dash, request.limit)

    async def health(self, _: Health) -> PerfHealth:
        await self._ready()
        state = self.state
        flags = {k: state.flags.get(k, DEFAULTS[k]) for k in sorted(DEFAULTS)
                 if k.startswith(ENABLE_PERF)}  # fmt: skip
        admitted = [_view(j) for j in state.book.jobs.values() if j.state != "delayed"]
        admitted.sort(key=lambda j: (-j.perf.vram_mb, -j.perf.ram_mb, j.job_id))
        return PerfHealth(
            flags=flags,
            budgets=state.enforce(),
            dashboard=state.dashboard_on(),
            counts=fold.counts(state),
            top_offenders=admitted[:5],
            top_time=profiler.dashboard(state.dash, 5).top_time,
            n=state.n,
        )


def _view(job: admission.Job) -> JobView:
    return JobView(job_id=job.job_id, job_type=job.job_type, queue_state=job.state,
                   code=job.code, reason=job.reason, perf=job.perf,
                   registered=job.registered, since=job.since)  # fmt: skip


def _perf(request: JobRegister) -> Perf:
    """``perf`` at the top level, else at ``payload.perf`` (400 naming the path)."""
    if request.perf is not None:
        return request.perf
    raw = (request.payload or {}).get("perf")
    if raw is None:
        return Perf()
    try:
        return msgspec.convert(raw, Perf)
    except msgspec.ValidationError as e:
        message = str(e).replace("`$", "`$.payload.perf")
        if "`$" not in str(e):
            message += " - at `$.payload.perf`"
        raise EndpointError(400, f"invalid request: {message}") from None
