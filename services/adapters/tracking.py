"""The last status this process saw for each provider job, so that a poll or cancel can
tell whether the status changed (and an ``adapter.status_changed`` event is due).

Bounded: past ``capacity`` jobs the least recently seen is forgotten; a forgotten job
seen again counts as new (``previous`` None). The book lives in one process: with
several adapters-service replicas a job's polls may reach different replicas, and each
reports the change it saw (documented in docs/adapters.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    status: str | None
    job_id: str | None


class StatusBook:
    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], Seen] = OrderedDict()

    def get(self, provider: str, remote_id: str) -> Seen | None:
        return self._seen.get((provider, remote_id))

    def record(
        self, provider: str, remote_id: str, status: str | None, job_id: str | None
    ) -> Seen | None:
        """Remember ``status`` for the job; return what was known before (or None).
        A job id once known is kept when a later call does not name one."""
        key = (provider, remote_id)
        before = self._seen.pop(key, None)
        if job_id is None and before is not None:
            job_id = before.job_id
        self._seen[key] = Seen(status, job_id)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return before

    def __len__(self) -> int:
        return len(self._seen)
