"""RunPod serverless (queue-based endpoints) adapter.

Follows:
- runpod-python ``runpod/endpoint/runner.py`` (``RunPodClient``, ``Endpoint.run``,
  ``Job.status``/``cancel``, ``Endpoint.health``) and ``runpod/endpoint/helpers.py``
  (final states ``COMPLETED``, ``FAILED``, ``TIMED_OUT``, ``CANCELLED``);
- RunPod docs "Endpoint operations" / "Operation reference" (``/run``, ``/status``,
  ``/cancel``, ``/health``; per-operation rate limits answered with 429) and
  "Job states" (``IN_QUEUE``, ``IN_PROGRESS`` — the docs page also writes ``RUNNING``,
  so both map to running — ``COMPLETED``, ``FAILED``, ``CANCELLED``, ``TIMED_OUT``).

API: ``{base_url}/{endpoint_id}`` with ``Authorization: Bearer <api_key>``.
``POST /run {"input": ...}`` -> ``{"id", "status": "IN_QUEUE"}``;
``GET /status/{id}`` -> ``{"id", "status", "output"?, "error"?, "delayTime"?,
"executionTime"?}``; ``POST /cancel/{id}`` -> ``{"id", "status": "CANCELLED"}``;
``GET /health`` -> ``{"jobs": {"inQueue", "inProgress", ...}, "workers": {"idle",
"running", ...}}``.

Retries: ``/run`` is not idempotent (RunPod documents no idempotency key; the SDK's
urllib3 ``Retry`` leaves POST out too), so a submit is retried only on 429: RunPod
documents it as the per-operation rate limit, a refusal before the job was created.
``/status`` and ``/health`` are GETs, and ``/cancel/{id}`` is idempotent (cancelling
twice leaves the job cancelled), so those are retried on every retryable failure.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import msgspec

from schemas.adapter_settings import RunPodSettings
from services.runtime.http import ProviderHttp, join_url, segment
from services.runtime.secrets import Secret

from .artifacts import collect
from .contract import (
    AdapterBase,
    CancelResult,
    HealthResult,
    HealthState,
    PollResult,
    ProviderJob,
    Status,
    SubmitResult,
    find_artifacts,
    map_status,
)
from .errors import InvalidJobError
from .options import AdapterOptions

PROVIDER: Final = "runpod"

STATUS_MAP: Final[dict[str, Status]] = {
    "IN_QUEUE": "queued",
    "IN_PROGRESS": "running",
    "RUNNING": "running",
    "COMPLETED": "done",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "TIMED_OUT": "timed_out",
}


class _Job(msgspec.Struct):
    id: str
    status: str
    output: Any = None
    error: Any = None
    delay_ms: int | None = msgspec.field(default=None, name="delayTime")
    execution_ms: int | None = msgspec.field(default=None, name="executionTime")


class _Health(msgspec.Struct):
    jobs: dict[str, int] = msgspec.field(default_factory=dict)
    workers: dict[str, int] = msgspec.field(default_factory=dict)


class RunPodAdapter(AdapterBase):
    """Live RunPod serverless adapter for one endpoint."""

    def __init__(
        self, settings: RunPodSettings, *, api_key: Secret, options: AdapterOptions | None = None
    ) -> None:
        super().__init__(PROVIDER, dry_run=False)
        self._settings = settings
        self._artifacts = (options or AdapterOptions()).artifacts
        self._base = join_url(settings.base_url, segment(settings.endpoint_id))
        self._http = ProviderHttp.build(
            PROVIDER,
            {"Authorization": Secret(f"Bearer {api_key.reveal()}")},
            settings.timeout_s,
            options or AdapterOptions(),
            redact=[api_key],
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _submit(self, job: ProviderJob) -> SubmitResult:
        if job.target is not None:
            raise InvalidJobError(
                PROVIDER, "submit", "a per-job target is not supported; set runpod.endpoint_id"
            )
        reply = await self._http.request(
            "submit",
            "POST",
            join_url(self._base, "run"),
            json_body={"input": job.input},
            idempotent=False,
        )
        found = self._http.decode("submit", reply, _Job)
        return SubmitResult(
            ok=True,
            provider=PROVIDER,
            dry_run=False,
            id=found.id,
            status=map_status(STATUS_MAP, found.status),
            raw_status=found.status,
            job_id=job.job_id,
        )

    async def _poll(self, remote_id: str) -> PollResult:
        reply = await self._http.request(
            "poll", "GET", join_url(self._base, "status", segment(remote_id)), idempotent=True
        )
        found = self._http.decode("poll", reply, _Job)
        logs = []
        if found.delay_ms is not None:
            logs.append(f"queued for {found.delay_ms} ms")
        if found.execution_ms is not None:
            logs.append(f"executed in {found.execution_ms} ms")
        inline = await asyncio.to_thread(
            collect, self._artifacts, PROVIDER, remote_id, found.output
        )
        return PollResult(
            provider=PROVIDER,
            id=found.id or remote_id,
            dry_run=False,
            status=map_status(STATUS_MAP, found.status),
            raw_status=found.status,
            artifacts=find_artifacts(inline.output) + inline.paths,
            logs=logs + inline.notes,
            output=inline.output,
            error=self._error_text(found.error),
            saved=inline.saved,
        )

    async def _cancel(self, remote_id: str) -> CancelResult:
        reply = await self._http.request(
            "cancel",
            "POST",
            join_url(self._base, "cancel", segment(remote_id)),
            idempotent=True,
        )
        found = self._http.decode("cancel", reply, _Job)
        status = map_status(STATUS_MAP, found.status)
        return CancelResult(
            ok=True,
            provider=PROVIDER,
            id=found.id or remote_id,
            dry_run=False,
            status=status,
            raw_status=found.status,
        )

    async def _health(self) -> HealthResult:
        reply = await self._http.request(
            "health", "GET", join_url(self._base, "health"), idempotent=True
        )
        found = self._http.decode("health", reply, _Health)
        state = _health_state(found.workers)
        return HealthResult(
            ok=state != "down",
            provider=PROVIDER,
            dry_run=False,
            state=state,
            queue_depth=found.jobs.get("inQueue"),
            workers=dict(found.workers),
        )

    def _error_text(self, error: object) -> str | None:
        if error is None or error == "":
            return None
        text = error if isinstance(error, str) else json.dumps(error, sort_keys=True)
        return self._http.redact(text)


def _health_state(workers: dict[str, int]) -> HealthState:
    """Serverless workers scale on demand: none at all is scaled to zero, not down."""
    if workers.get("idle", 0) + workers.get("running", 0) + workers.get("ready", 0) > 0:
        return "ready"
    if workers.get("initializing", 0) > 0:
        return "starting"
    if workers.get("unhealthy", 0) > 0:
        return "down"
    return "scaled_to_zero"
