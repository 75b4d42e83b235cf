"""The budget as a service: one writer over the pure fold, on NATS.

On start the state is rebuilt by the runtime :class:`Follower` from the
store (``fold.FOLLOWED``: the budget's own events, flags and telemetry), then
live. Before answering, the service also waits until it has folded the
newest change JetStream holds (``services/runtime/catch_up.py``): an event acknowledged by
the stream but not stored yet must not be decided past. From then on it writes
its own events alone and folds each as it decides it, so it no longer follows
them live (``Follower.own``): only flags and telemetry come back from the store.

Every change goes through one writer (:meth:`BudgetService._write_loop`):
requests queue a build function (a command's request straight from the
subscription's callback, no task: ``endpoint(..., take=...)``); the writer
runs the queued builds in order (each decides its change on the state with
``fold.decide`` and returns the events that record it) and sends the batch at
once; a second loop answers each request once JetStream acknowledged its
batch, while the writer already decides and sends the next ones (in order on
the wire). One writer means one order: the log's, so a replay decides what the
service decided. A batch that cannot be published fails the service
(``Service.spawn``); the runner starts a fresh instance, which rebuilds from
the store what was really stored.

Background loops: the evaluation timer (every ``evaluation_interval``, and
at once when a telemetry sample or a flag arrives: a change is recorded only
when it admits, rejects or evicts something), the hot-path profile flush and
the periodic ``profiler.snapshot``. One budget instance per machine: it is
that machine's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from schemas import Event
from schemas.budget import (
    AssetEvicted,
    BudgetChange,
    BudgetLimits,
    BudgetState,
    Inputs,
    LimitsUpdated,
    ProfilerSnapshot,
    Transition,
    Trigger,
)
from schemas.telemetry import TelemetrySample
from services.budget import fold, profiler
from services.budget.endpoints import BudgetEndpoints
from services.budget.errors import Refused
from services.budget.fold import BudgetFold, BudgetProjection, Outcome
from services.runtime.bus import Bus, Sent
from services.runtime.catch_up import catch_up
from services.runtime.config import Config
from services.runtime.endpoints import (
    EndpointError,
    InFlight,
    Pending,
    Taking,
    endpoint,
    reply_many,
    tap_requests,
)
from services.runtime.errors import BusError
from services.runtime.follower import Follower
from services.runtime.profiling import HotPaths
from services.runtime.service import Service
from services.runtime.snapshots import Snapshots

MAX_IN_FLIGHT = 1024
"""Requests served at once (they wait for the writer and their acks)."""
RECENT_TRANSITIONS = 10_000
"""Transitions kept for ``poll`` (older ones: the ``budget.state`` events)."""
WRITTEN = ("budget.state", "budget.limits.updated", "asset.registered", "asset.touched",
           "asset.evicted", "profiler.mark", "profiler.span", "profiler.reset",
           "profiler.snapshot")  # fmt: skip

BURSTS_IN_FLIGHT = 32
"""Bursts the writer sends before the oldest one's acks are in."""

Build = Callable[[], tuple[list[Event], Any]]
Sink = asyncio.Future[Any] | Pending
"""Where an answer goes: a caller awaiting :meth:`BudgetService._submit`, or a
request taken from its subscription (answered on NATS)."""
Answer = tuple[Sink, Any]
"""A request's sink and its answer (an exception: its error)."""


async def _deliver(sink: Sink, answer: Any) -> None:
    if isinstance(sink, Pending):
        if isinstance(answer, Refused):
            answer = EndpointError(answer.status, answer.reason)
        await (sink.fail(answer) if isinstance(answer, BaseException) else sink.reply(answer))
    elif not sink.done():
        if isinstance(answer, BaseException):
            sink.set_exception(answer)
        else:
            sink.set_result(answer)


async def _fail(answers: list[Answer], e: BusError) -> None:
    for sink, _ in answers:
        await _deliver(sink, EndpointError(503, f"not recorded: {e}"))


def _as_logged(limits: BudgetLimits) -> BudgetLimits:
    """``limits`` with the values the log will hold (a default or a config
    value of 3600 in a float field is 3600.0 there): the only input of a
    change not decoded to its schema types already, so the state folds what
    a replay folds (limits change rarely: the hot path does no round trip)."""
    return msgspec.convert(msgspec.to_builtins(limits), BudgetLimits)


def _change_n(event: Event) -> int:
    """A budget event's change number (``budget.state`` carries it in its change)."""
    data = event.payload
    return data.payload.n if isinstance(data, BudgetState) else getattr(data, "n", 0)


class BudgetService(BudgetEndpoints, Service):
    name = "budget"
    description = "Keeps the machine inside its CPU/RAM/VRAM budget; lazy assets; profiler."

    def __init__(self, bus: Bus, config: Config) -> None:
        super().__init__(bus, config)
        self.settings = config.budget
        self.hot = HotPaths("service.budget")
        self.follower = Follower(
            bus, BudgetProjection(node=config.telemetry.node_id()), fold.FOLLOWED,
            log=self.log, snapshots=Snapshots(config.data_path / "snapshots"),
            hold_ready=True, on_apply=self._on_fold, hot=self.hot,
        )  # fmt: skip
        self.ready = self.follower.ready
        self.recent: deque[Transition] = deque(maxlen=RECENT_TRANSITIONS)
        self._queue: list[tuple[Build, Sink]] = []
        self._taken = 0
        """Requests taken from their subscription and not answered yet."""
        self._wake = asyncio.Event()
        self._evaluate_now = asyncio.Event()
        self._dash_seen = (0, 0)

    @property
    def state(self) -> BudgetFold:
        return self.follower.state

    # -- lifecycle -------------------------------------------------------------

    async def setup(self) -> None:
        # a command waits for its JetStream ack: each request in a task of its own
        # (they queue on the writer in arrival order before their first pause)
        in_flight = InFlight(MAX_IN_FLIGHT, self.spawn)
        assert self.micro is not None
        for name, subject, request_type, handler, make in self._endpoints():
            take = None if make is None else self._taker(make)
            handle = endpoint(request_type, handler, in_flight=in_flight, take=take)
            await self.micro.add_endpoint(name=name, subject=subject, handler=handle)
            if isinstance(handle, Taking):  # a command: taken in the parser's step
                tap_requests(self.micro, name, handle, self.spawn)
        self.supervise(self.follower.run, "follow")
        self.spawn(self._go_live(), "live")

    async def teardown(self) -> None:
        queued, self._queue = self._queue, []
        for _, sink in queued:
            if isinstance(sink, Pending):
                await sink.fail(EndpointError(503, "the budget is stopping; retry"))
            else:
                sink.cancel()
        await self.follower.close()

    async def _go_live(self) -> None:
        await self.follower.loaded.wait()
        await catch_up(self.follower, WRITTEN, lambda: self.state.n, log=self.log,
                       number=_change_n, patience_s=self.settings.ready_timeout_s)  # fmt: skip
        # from here on only this instance writes them, folded as decided: the
        # store's copies of them are not read back (``Follower.own``)
        self.follower.own(fold.WRITTEN)
        self.spawn(self._write_loop(), "writer")
        self.hot.on = self.state.dashboard_on()
        if not self.state.book.limits_set:
            await self._submit(lambda: self._limits(self.settings.limits, "config"))
        self.ready.set()
        self.log.info(
            "budget ready", extra={"fields": {"n": self.state.n, "jobs": len(self.state.book.jobs)}}
        )
        self.supervise(self._evaluation_timer, "evaluation")
        self.supervise(self._profile_loop, "profiler")

    def _on_fold(self, seq: int, event: Event) -> None:
        data = event.payload
        if isinstance(data, TelemetrySample) or event.type == "flags.changed":
            self.hot.on = self.state.dashboard_on()
            self._evaluate_now.set()

    # -- the writer --------------------------------------------------------------

    async def _submit(self, build: Build) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((build, future))
        self._wake.set()
        return await future

    def _taker(self, make: Callable[[Any], Build]) -> Callable[[Any, Pending], bool]:
        """A ``take`` for ``endpoint``: once ready and under ``MAX_IN_FLIGHT``
        requests, queue the command's build on the writer from the callback
        itself (in arrival order); otherwise the request is served in a task,
        which waits for readiness or a free slot."""

        def take(request: Any, pending: Pending) -> bool:
            if not self.ready.is_set() or self._taken >= MAX_IN_FLIGHT:
                return False
            self._queue.append((make(request), pending))
            self._taken += 1
            self._wake.set()
            return True

        return take

    async def _write_loop(self) -> None:
        """Decide each queued build in order and put its events on the wire at
        once; :meth:`_answer_loop` answers once they are acknowledged. Sending
        does not wait for the previous burst's acks (at most
        ``BURSTS_IN_FLIGHT`` bursts are unacknowledged), so the wire carries
        the events in the order they were decided."""
        unacked: asyncio.Queue[tuple[Sent | None, list[Answer]]] = asyncio.Queue(BURSTS_IN_FLIGHT)
        self.spawn(self._answer_loop(unacked), "answers")
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            events: list[Event] = []
            answers: list[Answer] = []
            for build, sink in batch:
                try:
                    built, answer = build()
                except Exception as e:  # a refusal, or a bug: that request's error only
                    answers.append((sink, e))
                    continue
                events.extend(built)
                answers.append((sink, answer))
            sent = None
            if events:
                try:
                    sent = await self.bus.send_many(events)
                except BusError as e:
                    self.follower.stop_saving(f"a change was not recorded: {e}")
                    await _fail(answers, e)
                    raise  # the state is ahead of the log: a fresh instance rebuilds it
            await unacked.put((sent, answers))

    async def _answer_loop(self, unacked: asyncio.Queue[tuple[Sent | None, list[Answer]]]) -> None:
        """Answer each burst's requests, in order, once its events are acknowledged
        (a refusal too: it was decided on a state that includes earlier bursts)."""
        while True:
            sent, answers = await unacked.get()
            try:
                if sent is not None:
                    await sent.acked()
            except BusError as e:
                self.follower.stop_saving(f"a change was not acknowledged: {e}")
                await _fail(answers, e)
                while not unacked.empty():
                    await _fail(unacked.get_nowait()[1], e)
                raise  # the state is ahead of the log: a fresh instance rebuilds it
            replies: list[tuple[Pending, Any]] = []
            for sink, answer in answers:
                if isinstance(sink, Pending):
                    self._taken -= 1
                    if not isinstance(answer, BaseException):
                        replies.append((sink, answer))
                        continue
                await _deliver(sink, answer)
            await reply_many(replies)  # one write for the burst's answers

    def _inputs(self, limits: BudgetLimits | None = None) -> Inputs:
        """What changed since the last change: the newest sample, the flag, limits."""
        state = self.state
        book = state.book
        sample = state.sample if state.sample is not None and state.sample != book.metrics else None
        enforce = state.enforce()
        return Inputs(
            metrics=sample,
            enforce=enforce if enforce != book.enforce else None,
            limits=_as_logged(limits) if limits is not None and limits != book.limits else None,
        )

    def _change(
        self, trigger: Trigger, key: str, limits: BudgetLimits | None = None, **request: Any
    ) -> tuple[Event, Outcome]:
        """Apply one change to the state; the event that records it (decisions
        filled in) and its outcome. :class:`~services.budget.errors.Refused`
        leaves the state as it was."""
        state = self.state
        data = BudgetChange(n=state.n + 1, inputs=self._inputs(limits), **request)
        stamp = BudgetState(trigger=trigger, payload=data, timestamp=self.clock.now())
        # no encode/decode round trip before folding: requests and samples were
        # decoded to their schema types, limits pass through _as_logged, so the
        # state folds the values the log will hold (the replay test compares)
        with self.hot.span(trigger):
            outcome = fold.decide(state, stamp)
        assert outcome is not None
        recorded = msgspec.structs.replace(stamp, payload=outcome.record(data, state))
        self.recent.extend(outcome.transitions)
        self._log(trigger, outcome)
        return self.bus.event(recorded, key=key), outcome

    def _changed(self, trigger: Trigger, **request: Any) -> tuple[list[Event], Outcome]:
        """A change plus its ``asset.evicted`` outputs."""
        event, outcome = self._change(trigger, request.get("job_id") or "budget", **request)
        return [event, *self._evictions(outcome)], outcome

    def _limits(
        self, limits: BudgetLimits, origin: Literal["api", "config"]
    ) -> tuple[list[Event], Any]:
        old = self.state.book.limits
        event, outcome = self._change("limits.updated", "limits", limits=limits)
        changed = [f for f in msgspec.structs.fields(BudgetLimits)
                   if getattr(old, f.name) != getattr(limits, f.name)]  # fmt: skip
        update = LimitsUpdated(limits=limits, changed=[f.name for f in changed],
                               origin=origin, n=self.state.n)  # fmt: skip
        self.log.info(
            "limits updated", extra={"fields": {"origin": origin, "changed": update.changed}}
        )
        return [event, self.bus.event(update, key="limits"), *self._evictions(outcome)], None

    def _evictions(self, outcome: Outcome) -> list[Event]:
        return [
            self.bus.event(
                AssetEvicted(asset_id=a.asset_id, size_mb=a.size_mb, device=a.device,
                             code="requested" if reason.startswith("requested") else "pressure",
                             reason=reason, owner=a.owner, n=self.state.n),
                key=a.asset_id,
            )
            for a, reason in outcome.evicted
        ]  # fmt: skip

    def _log(self, trigger: str, outcome: Outcome) -> None:
        for t in outcome.transitions:
            level = 20 if t.state in ("delayed", "rejected") else 10  # INFO, else DEBUG
            if not self.log.isEnabledFor(level):
                continue  # the fields cost more than the call on every change
            self.log.log(level, "job " + t.state, extra={"fields": {
                "job_id": t.job_id, "code": t.code, "reason": t.reason, "n": t.n,
                "trigger": trigger}})  # fmt: skip
        for asset, reason in outcome.evicted:
            self.log.info(
                "asset evicted", extra={"fields": {"asset_id": asset.asset_id, "reason": reason}}
            )

    # -- background loops ----------------------------------------------------------

    async def evaluate(self, trigger: Trigger) -> list[Transition]:
        """Re-evaluate; record a change only when it decides something."""

        def build() -> tuple[list[Event], list[Transition]]:
            trial = copy.deepcopy(self.state)
            data = BudgetChange(n=trial.n + 1, inputs=self._inputs())
            stamp = BudgetState(trigger=trigger, timestamp=self.clock.now(), payload=data)
            outcome = fold.decide(trial, stamp)
            if outcome is None or not (outcome.transitions or outcome.evicted):
                return [], []
            events, outcome = self._changed(trigger)
            return events, outcome.transitions

        transitions: list[Transition] = await self._submit(build)
        return transitions

    async def _evaluation_timer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                interval = self.state.book.limits.evaluation_interval
                await asyncio.wait_for(self._evaluate_now.wait(), interval)
            self._evaluate_now.clear()
            await self.evaluate("evaluation")

    async def _profile_loop(self) -> None:
        """Hot-path aggregates every ``profile_flush_s``; a ``profiler.snapshot``
        every ``snapshot_interval_s`` when marks or spans changed the dashboard."""
        loop = asyncio.get_running_loop()
        next_snapshot = loop.time() + self.settings.snapshot_interval_s
        while True:
            await asyncio.sleep(self.settings.profile_flush_s)
            spans = self.hot.drain()  # what was gathered while the flag was off: dropped
            for span in spans if self.hot.on else ():
                await self._command(self._span_build(span))  # lenient already: sent as it is
            interval = self.settings.snapshot_interval_s
            if interval > 0 and loop.time() >= next_snapshot:
                next_snapshot = loop.time() + interval
                await self._snapshot_event()

    async def _snapshot_event(self) -> None:
        dash = self.state.dash
        seen = (dash.n_spans, dash.n_marks)
        if seen == self._dash_seen:
            return
        self._dash_seen = seen

        def build() -> tuple[list[Event], None]:
            data = ProfilerSnapshot(dashboard=profiler.dashboard(dash, 10), n=self.state.n)
            return [self.bus.event(data, key="profiler")], None

        await self._submit(build)
