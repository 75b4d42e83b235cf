"""The job table: a pure fold of the ``job.*`` events, one row per job.

It moved here from the store (the scheduler owns the jobs); ``gpuroute replay
--projection jobs`` prints its hash. Rows of logs written before the scheduler
existed encode exactly as they did (:meth:`JobTableProjection.to_builtins`
leaves out every field added since while it holds its default), so an old
log's hash does not move.

``job.progress`` updates a row without joining its ``history`` (a command can
print thousands of lines); ``job.lease.renewed`` is keyed by a scheduler
instance, not a job, and is not a row (the service reads leases itself).
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.jobs import CANCELLED, JobCancelled, JobFailed, JobStarted, JobSubmitted, JobSucceeded
from schemas.scheduler import (
    TERMINAL,
    BudgetView,
    DecisionView,
    JobDelayed,
    JobLeaseRenewed,
    JobProgress,
    JobQueued,
    JobRerouted,
    JobRetried,
    JobView,
)

MAX_LINE = 500
"""Characters of the last output line kept in a row."""


class JobRow(msgspec.Struct, kw_only=True):
    # the fields of the store's job table, in its order (old logs encode as before)
    job_id: str
    state: str
    kind: str | None = None
    target: str | None = None
    provider: str | None = None
    rule: str | None = None
    error: str | None = None
    submitted_ts: float | None = None
    updated_ts: float = 0.0
    history: list[str] = msgspec.field(default_factory=list)
    # added by the scheduler
    executor: str | None = None
    reason: str | None = None
    budget_state: str | None = None
    budget_code: str | None = None
    budget_reason: str | None = None
    attempts: int = 0
    max_attempts: int = 0
    priority: int = 0
    timeout_s: float | None = None
    idempotency_key: str | None = None
    owner: str | None = None
    progress: float | None = None
    last_line: str | None = None
    remote_id: str | None = None
    artifacts: list[str] = msgspec.field(default_factory=list)
    cost_usd: float | None = None
    dry_run: bool = False
    error_code: str | None = None
    retry_at: float | None = None
    reroutes: int = 0
    rerouted_attempts: int = 0
    """Attempts that failed at a provider and were rerouted to another one: they do
    not count against ``max_attempts``."""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def view(self) -> JobView:
        decision = None
        if self.target is not None and self.rule is not None:
            decision = DecisionView(target=self.target, rule=self.rule, reason=self.reason or "",
                                    provider=self.provider)  # fmt: skip
        budget = None
        if self.budget_state is not None:
            budget = BudgetView(state=self.budget_state, code=self.budget_code or "",
                                reason=self.budget_reason or "")  # fmt: skip
        return JobView(
            job_id=self.job_id, state=self.state, kind=self.kind, executor=self.executor,
            decision=decision, budget=budget, attempts=self.attempts,
            max_attempts=self.max_attempts, progress=self.progress, last_line=self.last_line,
            artifacts=list(self.artifacts), cost_usd=self.cost_usd, dry_run=self.dry_run,
            error=self.error, error_code=self.error_code, owner=self.owner,
            remote_id=self.remote_id, submitted_ts=self.submitted_ts,
            updated_ts=self.updated_ts, history=list(self.history), reroutes=self.reroutes,
        )  # fmt: skip


JobTable = dict[str, JobRow]
_OLD_FIELDS = frozenset(JobRow.__struct_fields__[:10])
_ADDED_DEFAULTS = {
    k: v for k, v in msgspec.to_builtins(JobRow(job_id="", state="")).items()
    if k not in _OLD_FIELDS
}  # fmt: skip


def _budget(row: JobRow, state: str, code: str, reason: str) -> None:
    row.budget_state, row.budget_code, row.budget_reason = state, code, reason


class JobTableProjection:
    name = "jobs"
    type_prefix: str | None = "job."
    version = 3

    def initial(self) -> JobTable:
        return {}

    def apply(self, state: JobTable, event: Event) -> JobTable:
        data = event.payload
        if isinstance(data, JobLeaseRenewed):
            return state
        row = state.get(event.key)
        if row is None:
            row = state[event.key] = JobRow(job_id=event.key, state="unknown")
        row.updated_ts = event.ts
        if isinstance(data, JobProgress):
            _progress(row, data)
            return state
        row.history.append(event.type)
        _apply(row, data, event.ts)
        return state

    def to_builtins(self, state: JobTable) -> Any:
        return {job_id: _builtins(row) for job_id, row in sorted(state.items())}

    def from_builtins(self, data: Any) -> JobTable:
        return msgspec.convert(data, JobTable)


def _builtins(row: JobRow) -> dict[str, Any]:
    raw: dict[str, Any] = msgspec.to_builtins(row)
    return {k: v for k, v in raw.items() if k in _OLD_FIELDS or v != _ADDED_DEFAULTS[k]}


def _progress(row: JobRow, data: JobProgress) -> None:
    if data.value is not None and data.maximum:
        row.progress = round(min(max(data.value / data.maximum, 0.0), 1.0), 4)
    if data.line is not None:
        row.last_line = data.line[:MAX_LINE]
    if data.remote_id is not None:
        row.remote_id = data.remote_id


def _apply(row: JobRow, data: Any, ts: float) -> None:
    match data:
        case JobSubmitted(spec=spec):
            row.state, row.kind, row.submitted_ts = "submitted", spec.kind, ts
            row.executor, row.owner = data.executor, data.owner
            row.idempotency_key, row.priority = data.idempotency_key, data.priority
            row.timeout_s = data.timeout_s
            row.max_attempts = data.max_attempts if data.executor is not None else 0
        case JobAdvised(target=target, provider=provider, rule=rule):
            # an infeasible job will never run: that is its state, not "advised"
            now = "infeasible" if target == "infeasible" else "advised"
            row.state, row.target, row.provider, row.rule = now, target, provider, rule
            if row.executor is not None:
                row.reason = data.reason
        case JobQueued(code=code, reason=reason):
            row.state = "queued"
            _budget(row, "off" if code in ("budgets_off", "no_budget") else "queued", code, reason)
        case JobDelayed(code=code, reason=reason):
            row.state = "delayed"
            _budget(row, "delayed", code, reason)
        case JobStarted(target=target, provider=provider):
            row.state, row.target, row.provider = "running", target, provider
            if data.attempt is not None:
                row.attempts, row.progress, row.retry_at = data.attempt, None, None
            if data.owner is not None:
                row.owner = data.owner
        case JobRetried(attempt=attempt, delay_s=delay, reason=reason):
            row.state, row.error, row.retry_at = "retrying", reason, round(ts + delay, 6)
            row.attempts = max(row.attempts, attempt - 1)
            if data.owner is not None:
                row.owner = data.owner
        case JobRerouted(to_target=target, to_provider=provider, reason=reason):
            row.target, row.provider, row.reason = target, provider, reason
            row.rule = data.rule or row.rule
            row.reroutes += 1
            if data.from_target != "wait":
                row.rerouted_attempts += 1
        case JobSucceeded():
            row.state = "succeeded"
            row.artifacts, row.cost_usd = list(data.artifacts), data.cost_usd
            row.dry_run, row.progress = data.dry_run, 1.0 if row.executor else row.progress
            if data.remote_id is not None:
                row.remote_id = data.remote_id
        case JobFailed(error=error):
            row.state, row.error, row.error_code = "failed", error, data.code
        case JobCancelled():
            row.state = CANCELLED
