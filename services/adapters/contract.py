"""The one job contract every provider adapter keeps.

``submit(job) -> SubmitResult``, ``poll(remote_id) -> PollResult``,
``cancel(remote_id) -> CancelResult``, ``health() -> HealthResult``, ``aclose()``.
Live adapters (``runpod``, ``replicate``, ``huggingface``, ``modal``) and the dry-run
adapter all subclass ``AdapterBase``, which times each call and writes its JSON log line.

Statuses: each provider's job statuses map onto ``Status``. A status a provider
documents is mapped in that provider's table; anything else becomes ``"unknown"`` and
the provider's word is kept in ``raw_status`` (never guessed). ``"done"`` is success
(the issue's dry-run answer reads ``status: "done"``).

Results are frozen msgspec Structs defined in ``schemas/adapters.py`` (they cross NATS
between the adapters service and the gateway): they encode to JSON as they are and hold
no secrets. A call that cannot produce a result raises an ``ProviderError`` (see
``errors.py``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from typing import Protocol, TypeVar

from schemas.adapters import (
    PROVIDERS,
    TERMINAL_STATUSES,
    CancelResult,
    HealthResult,
    HealthState,
    PollResult,
    ProviderJob,
    ProviderName,
    Status,
    SubmitResult,
)
from services.runtime.provider_errors import ProviderError

from .calllog import CallRecord, log_call

__all__ = [
    "PROVIDERS",
    "TERMINAL_STATUSES",
    "AdapterBase",
    "CancelResult",
    "HealthResult",
    "HealthState",
    "PollResult",
    "ProviderAdapter",
    "ProviderJob",
    "ProviderName",
    "Status",
    "SubmitResult",
    "find_artifacts",
    "map_status",
]


class ProviderAdapter(Protocol):
    """What the adapters service calls; every adapter here satisfies it."""

    @property
    def provider(self) -> str: ...

    @property
    def dry_run(self) -> bool: ...

    async def submit(self, job: ProviderJob) -> SubmitResult: ...

    async def poll(self, remote_id: str) -> PollResult: ...

    async def cancel(self, remote_id: str) -> CancelResult: ...

    async def health(self) -> HealthResult: ...

    async def aclose(self) -> None: ...


def map_status(table: Mapping[str, Status], raw: str) -> Status:
    """Our status for a provider's ``raw`` status; ``"unknown"`` when not documented."""
    return table.get(raw, "unknown")


def find_artifacts(output: object, limit: int = 100) -> list[str]:
    """URLs (``http(s)://``, ``s3://``, ``gs://``) found anywhere in ``output``, in order."""
    found: list[str] = []
    stack: list[object] = [output]
    while stack and len(found) < limit:
        item = stack.pop()
        if isinstance(item, str):
            if item.startswith(("https://", "http://", "s3://", "gs://")) and item not in found:
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


R = TypeVar("R", SubmitResult, PollResult, CancelResult, HealthResult)


class AdapterBase(ABC):
    """Shared frame: times every call and logs one JSON line for it, ok or not."""

    def __init__(self, provider: str, *, dry_run: bool) -> None:
        self._provider = provider
        self._dry_run = dry_run

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def dry_run(self) -> bool:
        return self._dry_run

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self._provider!r}, dry_run={self._dry_run})"

    async def submit(self, job: ProviderJob) -> SubmitResult:
        """Hand ``job`` to the provider. Raises ``ProviderError``; never retried unless
        the provider makes the submit idempotent (see each provider module)."""
        return await self._logged("submit", self._submit(job), job_id=job.job_id)

    async def poll(self, remote_id: str) -> PollResult:
        """The job's current status, output URLs and logs. Raises ``ProviderError``."""
        return await self._logged("poll", self._poll(remote_id), remote_id=remote_id)

    async def cancel(self, remote_id: str) -> CancelResult:
        """Ask the provider to stop the job. Raises ``ProviderError``."""
        return await self._logged("cancel", self._cancel(remote_id), remote_id=remote_id)

    async def health(self) -> HealthResult:
        """Whether the provider can take work now. Raises ``ProviderError``."""
        return await self._logged("health", self._health())

    async def aclose(self) -> None:
        """Release sessions and background tasks; the adapter is unusable afterwards."""
        return None

    async def _logged(
        self,
        call: str,
        work: Awaitable[R],
        *,
        job_id: str | None = None,
        remote_id: str | None = None,
    ) -> R:
        started = time.perf_counter()
        try:
            result = await work
        except ProviderError as err:
            log_call(self._record(call, started, False, job_id, remote_id, err=err))
            raise
        ok = getattr(result, "ok", True)
        rid = getattr(result, "id", None) or remote_id
        status = getattr(result, "status", None) or getattr(result, "state", None)
        reason = getattr(result, "reason", None) or getattr(result, "error", None)
        log_call(self._record(call, started, ok, job_id, rid, status=status, reason=reason))
        return result

    def _record(
        self,
        call: str,
        started: float,
        ok: bool,
        job_id: str | None,
        remote_id: str | None,
        *,
        status: str | None = None,
        reason: str | None = None,
        err: ProviderError | None = None,
    ) -> CallRecord:
        return CallRecord(
            event=f"adapter.{call}",
            provider=self._provider,
            dry_run=self._dry_run,
            latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
            ok=ok,
            remote_id=remote_id,
            job_id=job_id,
            status=status,
            error=type(err).__name__ if err else None,
            reason=err.reason if err else reason,
        )

    @abstractmethod
    async def _submit(self, job: ProviderJob) -> SubmitResult: ...

    @abstractmethod
    async def _poll(self, remote_id: str) -> PollResult: ...

    @abstractmethod
    async def _cancel(self, remote_id: str) -> CancelResult: ...

    @abstractmethod
    async def _health(self) -> HealthResult: ...
