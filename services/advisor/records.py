"""One job's recorded decision with the context it was made in, read from the log.

A what-if for one job (``POST /api/advisor/whatif``) needs what
``gpuroute replay --what-if`` rebuilds for every job of a log, for that job
alone: its newest ``job.advised`` (read from the store by key) holds its
:class:`~schemas.advisor.AdvisedInputs` (the spec, the decision, the store
position the advisor's state had folded up to). Folding the events the advisor
follows (``state.FOLLOWED``) from the store, from the initial state of the
advisor's node up to that position, rebuilds the context, and the recorded
telemetry sample id, registry version, flags and queue depth check the rebuild
(``replay.rebuild_problem``). Every advisor replica and every restart gives the
same record: nothing is kept but a cache.

Bounds: at most ``MAX_FOLDED`` events are folded per rebuild (beyond that the
answer is :class:`NotReplayable` pointing at ``gpuroute replay --what-if``,
which reads the SQLite file directly); the last ``KEPT_STATES`` rebuilt states
are kept by position (positions of an append-only log never change meaning),
so an operator trying numbers on one job folds its history once.

Errors: :class:`DecisionNotFound` (no ``job.advised`` for the job),
:class:`NotReplayable`; a store that does not answer raises the bus's
``ServiceCallError`` (503/504), which the endpoint passes on.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from schemas import decode_event
from schemas.advisor import AdvisedInputs, JobAdvised
from schemas.subjects import STORE_READ
from schemas.system import StoredPage, StoreReadRequest
from services.advisor.decision import AdviceRecord
from services.advisor.errors import DecisionNotFound, NotReplayable
from services.advisor.replay import rebuild_problem
from services.advisor.state import FOLLOWED, AdvisorEvent, AdvisorState, apply, context
from services.runtime.bus import Bus

PAGE = 1000
MAX_FOLDED = 200_000
"""Events one rebuild may read (about 10 days of a busy node's telemetry)."""
KEPT_STATES = 16
READ_TIMEOUT_S = 5.0


class AdviceRecords:
    """Rebuilds :class:`AdviceRecord` s from the store for the advisor of ``node``
    (``AdvisorState.node``: the same telemetry the live advisor folds)."""

    def __init__(self, bus: Bus, node: str | None) -> None:
        self.bus = bus
        self.node = node
        self._states: OrderedDict[int, AdvisorState] = OrderedDict()

    async def record(self, job_id: str) -> AdviceRecord:
        """Job ``job_id``'s newest recorded decision with its rebuilt context."""
        inputs = await self._inputs(job_id)
        state = await self._state_at(job_id, inputs.state_position)
        problem = rebuild_problem(state, inputs)
        if problem is not None:
            raise NotReplayable(job_id, f"job {job_id!r}: its context cannot be rebuilt: {problem}")
        assert inputs.decision is not None  # _inputs returns replayable inputs only
        return AdviceRecord(
            job_id=job_id,
            spec=inputs.spec,
            context=context(state),
            decision=inputs.decision,
            config_digest=inputs.config_digest,
        )

    async def _read(self, request: StoreReadRequest) -> StoredPage:
        return await self.bus.call(STORE_READ, request, StoredPage, timeout=READ_TIMEOUT_S)

    async def _inputs(self, job_id: str) -> AdvisedInputs:
        newest = StoreReadRequest(type="job.advised", key=job_id, last=True, limit=1)
        page = await self._read(newest)
        if not page.events:
            raise DecisionNotFound(job_id)
        try:
            payload = decode_event(bytes(page.events[0].event)).payload
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            problem = f"job {job_id!r}: its job.advised does not decode: {e}"
            raise NotReplayable(job_id, problem) from e
        inputs = payload.replayable if isinstance(payload, JobAdvised) else None
        if inputs is None:
            raise NotReplayable(
                job_id, f"job {job_id!r}: its decision was recorded without inputs to re-run"
            )
        return inputs

    async def _state_at(self, job_id: str, position: int) -> AdvisorState:
        """The advisor's state folded up to store ``position``."""
        kept = self._states.get(position)
        if kept is not None:
            self._states.move_to_end(position)
            return kept
        state, after, folded = AdvisorState(node=self.node), 0, 0
        while after < position:
            page = await self._read(
                StoreReadRequest(after=after, limit=PAGE, patterns=list(FOLLOWED))
            )
            for stored in page.events:
                if stored.seq > position:
                    break
                after = stored.seq
                try:
                    payload = decode_event(bytes(stored.event)).payload
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # the live follower skips it too (Follower.skipped)
                if isinstance(payload, AdvisorEvent):
                    state = apply(state, payload)
            folded += len(page.events)
            if folded >= MAX_FOLDED and after < position:
                raise NotReplayable(
                    job_id,
                    f"job {job_id!r}: more than {MAX_FOLDED} events precede its decision;"
                    " re-run it offline with `gpuroute replay --what-if FILE --db events.db`",
                )
            if not page.events or not (page.more or len(page.events) >= PAGE):
                break
            if page.events[-1].seq > position:
                break
        self._states[position] = state
        if len(self._states) > KEPT_STATES:
            self._states.popitem(last=False)
        return state
