"""The jobs this adapters service knows of, folded from ``adapter.*`` events.

Each provider job (``(provider, remote_id)``) has one :class:`JobRecord`: whether it
was submitted live or dry-run, the last status seen, by which adapters instance, and
what a poll or cancel needs when the provider cannot be asked (a Hugging Face result,
which exists only in the process that ran the request). The service records its own
calls here at once, and folds the ``adapter.submitted`` / ``adapter.status_changed``
events of other instances (and, on start, of every earlier run) with :meth:`apply`, so
a restarted service knows every job it submitted:

- a poll or cancel of a live job goes to the live provider even while
  ``features.enable_public_gpu_adapters`` is off (only new submits follow the flag);
- a dry-run poll of an id no one submitted is a 404, not a simulated ``done``;
- a status event is due when a call sees a status other than the last one recorded.

Bounded: past ``capacity`` jobs the least recently touched is forgotten (a forgotten
job seen again counts as new). :meth:`apply` is a pure fold of event payloads.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.adapters import AdapterStatusChanged, AdapterSubmitted, SavedArtifact

DEFAULT_CAPACITY = 100_000


@dataclass(frozen=True)
class JobRecord:
    provider: str
    remote_id: str
    dry_run: bool
    status: str | None
    job_id: str | None = None
    raw_status: str | None = None
    instance: str | None = None  # the adapters instance that submitted it
    submitted_at: float | None = None  # event time of the submit (Unix seconds)
    artifacts: list[str] = field(default_factory=list)
    saved: list[SavedArtifact] = field(default_factory=list)
    output: Any = None
    error: str | None = None
    cancel_requested: bool = False


class JobBook:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._jobs: OrderedDict[tuple[str, str], JobRecord] = OrderedDict()

    def get(self, provider: str, remote_id: str) -> JobRecord | None:
        return self._jobs.get((provider, remote_id))

    def __len__(self) -> int:
        return len(self._jobs)

    def records(self) -> list[JobRecord]:
        """Every record, least recently touched first (what :meth:`restore` takes)."""
        return list(self._jobs.values())

    def restore(self, records: list[JobRecord]) -> None:
        """Put ``records`` back in the order :meth:`records` gave them (a snapshot)."""
        for record in records:
            self._put(record)

    def submitted(
        self, payload: AdapterSubmitted, submitted_at: float | None = None
    ) -> JobRecord | None:
        """Record a submit that returned a remote id; None for one that did not."""
        if not payload.ok or payload.remote_id is None:
            return None
        record = JobRecord(
            provider=payload.provider, remote_id=payload.remote_id, dry_run=payload.dry_run,
            status=payload.status, job_id=payload.job_id, raw_status=payload.raw_status,
            instance=payload.instance, submitted_at=submitted_at,
        )  # fmt: skip
        before = self.get(payload.provider, payload.remote_id)
        if before is not None and before.status is not None:
            record = replace(before, job_id=before.job_id or record.job_id,
                             instance=record.instance, submitted_at=submitted_at)  # fmt: skip
        self._put(record)
        return record

    def changed(self, payload: AdapterStatusChanged) -> JobRecord | None:
        """Record a status seen by a poll, cancel or background inference; return what
        was known before (None: a job not seen before)."""
        before = self.get(payload.provider, payload.remote_id)
        base = before or JobRecord(
            provider=payload.provider, remote_id=payload.remote_id, dry_run=payload.dry_run,
            status=None, instance=payload.instance,
        )  # fmt: skip
        self._put(
            replace(
                base, status=payload.status, raw_status=payload.raw_status,
                job_id=payload.job_id or base.job_id,
                artifacts=payload.artifacts or base.artifacts,
                saved=payload.saved or base.saved,
                output=payload.output if payload.output is not None else base.output,
                error=payload.error,
                cancel_requested=base.cancel_requested or payload.call == "cancel",
            )
        )  # fmt: skip
        return before

    def apply(self, payload: object, ts: float | None = None) -> None:
        """Fold one event payload (other types are ignored)."""
        if isinstance(payload, AdapterSubmitted):
            self.submitted(payload, ts)
        elif isinstance(payload, AdapterStatusChanged):
            self.changed(payload)

    def _put(self, record: JobRecord) -> None:
        key = (record.provider, record.remote_id)
        self._jobs.pop(key, None)
        self._jobs[key] = record
        while len(self._jobs) > self._capacity:
            self._jobs.popitem(last=False)
