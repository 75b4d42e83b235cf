"""The job table: every job's latest state and the history of its event types."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import Event
from schemas.advisor import JobAdvised
from schemas.jobs import (
    CANCELLED,
    JobCancelled,
    JobFailed,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
)


class JobRow(msgspec.Struct, kw_only=True):
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


JobTable = dict[str, JobRow]


class JobTableProjection:
    name = "jobs"
    type_prefix: str | None = "job."
    version = 1

    def initial(self) -> JobTable:
        return {}

    def apply(self, state: JobTable, event: Event) -> JobTable:
        row = state.get(event.key)
        if row is None:
            row = state[event.key] = JobRow(job_id=event.key, state="unknown")
        row.history.append(event.type)
        row.updated_ts = event.ts
        match event.payload:
            case JobSubmitted(spec=spec):
                row.state, row.kind, row.submitted_ts = "submitted", spec.kind, event.ts
            case JobAdvised(target=target, provider=provider, rule=rule):
                # an infeasible job will never run: that is its state, not "advised"
                now = "infeasible" if target == "infeasible" else "advised"
                row.state, row.target, row.provider, row.rule = now, target, provider, rule
            case JobStarted(target=target, provider=provider):
                row.state, row.target, row.provider = "running", target, provider
            case JobSucceeded():
                row.state = "succeeded"
            case JobFailed(error=error):
                row.state, row.error = "failed", error
            case JobCancelled():
                row.state = CANCELLED
        return state

    def to_builtins(self, state: JobTable) -> Any:
        return {job_id: msgspec.to_builtins(row) for job_id, row in sorted(state.items())}

    def from_builtins(self, data: Any) -> JobTable:
        return msgspec.convert(data, JobTable)
