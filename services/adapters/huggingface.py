"""Hugging Face Inference Endpoints (dedicated) adapter.

Follows:
- huggingface_hub ``src/huggingface_hub/_inference_endpoints.py``
  (``InferenceEndpointStatus``: ``pending``, ``initializing``, ``updating``,
  ``updateFailed``, ``running``, ``paused``, ``failed``, ``scaledToZero``; the raw
  document's ``status.state`` and ``status.url``; ``pause``/``resume``/
  ``scale_to_zero``) and ``hf_api.py`` / ``constants.py``
  (``INFERENCE_ENDPOINTS_ENDPOINT = https://api.endpoints.huggingface.cloud/v2``,
  ``GET {it}/endpoint/{namespace}/{name}``, ``POST .../pause``, ``.../resume``,
  ``.../scale-to-zero``; ``Authorization: Bearer <token>``);
- HF docs "Autoscaling": a scaled-to-zero endpoint's proxy answers 503 while a replica
  starts, unless the request carries ``X-Scale-Up-Timeout: <seconds>``, in which case
  the proxy holds the request until a replica is ready or the time runs out.

An endpoint answers inference synchronously (``POST`` to its URL), so ``submit`` looks
the endpoint up, refuses a paused or failed one, then runs the inference request in a
background task it owns and returns a local id (``hf-<hex>``); ``poll`` reads that
task's state. The request itself lives in this process, so what a later poll or cancel
needs is kept in events: when the request ends (or is cancelled because the service
stops) the adapter calls ``AdapterOptions.on_result``, and the service records the status,
the output (small JSON) and the saved artifacts (raw bytes, large JSON) in an
``adapter.status_changed`` event. A poll of a job this process does not hold (after a
restart, or at another replica) is answered from that record (``AdapterOptions.known``):

- ended: its recorded status, output and artifacts;
- not ended, and submitted less than ``result_deadline_s`` ago: its last recorded
  status (the request may still run in the instance that submitted it);
- not ended past that deadline: ``failed`` / ``interrupted`` (every request ends by
  then, by timeout if nothing else, so its process must have died: a SIGKILL).

A cancel of such a job that has not ended is refused (``JobConflictError``): the
request can only be stopped by the process that runs it.

Retries: the management GET and pause/resume/scale-to-zero (state transitions: doing
one twice is doing it once) are retried. The inference POST is not idempotent, so it
is retried only on 503, which the docs define as "replica still initializing: request
not processed", with its own attempt budget (``scale_up_max_attempts``) because a cold
start takes minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final

import msgspec

from schemas.adapter_settings import HuggingFaceSettings
from schemas.adapters import MAX_EVENT_OUTPUT_BYTES, SavedArtifact
from services.runtime.http import NOT_PROCESSED, ProviderHttp, join_url, segment
from services.runtime.provider_errors import ProviderError, ProviderHTTPError
from services.runtime.secrets import Secret

from .artifacts import collect, save_bytes
from .contract import (
    TERMINAL_STATUSES,
    AdapterBase,
    CancelResult,
    HealthResult,
    HealthState,
    PollResult,
    ProviderJob,
    Status,
    SubmitResult,
    find_artifacts,
)
from .errors import InvalidJobError, JobConflictError, UnknownJobError
from .options import AdapterOptions
from .tracking import JobRecord

PROVIDER: Final = "huggingface"
log = logging.getLogger("gpuroute.adapters.huggingface")

# Endpoint state -> the status of a job just handed to it.
STATUS_MAP: Final[dict[str, Status]] = {
    "running": "running",
    "scaledToZero": "starting",
    "initializing": "starting",
    "pending": "starting",
    "updating": "starting",
    "paused": "failed",
    "failed": "failed",
    "updateFailed": "failed",
}
HEALTH_MAP: Final[dict[str, HealthState]] = {
    "running": "ready",
    "scaledToZero": "scaled_to_zero",
    "initializing": "starting",
    "pending": "starting",
    "updating": "starting",
    "paused": "paused",
    "failed": "down",
    "updateFailed": "down",
}


class _EndpointStatus(msgspec.Struct):
    state: str
    url: str | None = None


class _Endpoint(msgspec.Struct):
    name: str
    status: _EndpointStatus


@dataclass
class _Job:
    remote_id: str
    status: Status
    raw_status: str | None
    output: Any = None
    error: str | None = None
    logs: list[str] = field(default_factory=list)
    saved: list[SavedArtifact] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class HuggingFaceAdapter(AdapterBase):
    """Live adapter for one dedicated Inference Endpoint."""

    def __init__(
        self,
        settings: HuggingFaceSettings,
        *,
        api_key: Secret,
        options: AdapterOptions | None = None,
    ) -> None:
        super().__init__(PROVIDER, dry_run=False)
        options = options or AdapterOptions()
        auth = {"Authorization": Secret(f"Bearer {api_key.reveal()}")}
        self._settings = settings
        self._options = options
        self._manage = join_url(
            settings.management_url,
            "endpoint",
            segment(settings.namespace),
            segment(settings.name),
        )
        self._http = ProviderHttp.build(
            PROVIDER, auth, settings.timeout_s, options, redact=[api_key]
        )
        inference_retry = msgspec.structs.replace(
            options.retry, max_attempts=settings.scale_up_max_attempts
        )
        self._inference = ProviderHttp.build(
            PROVIDER,
            auth,
            settings.inference_timeout_s,
            replace(options, retry=inference_retry),
            redact=[api_key],
        )
        self._jobs: dict[str, _Job] = {}

    @property
    def result_deadline_s(self) -> float:
        """The longest an inference request can take, retries and waits included: past
        it, a request that recorded no result was lost with its process."""
        settings, retry = self._settings, self._options.retry
        per_try = settings.inference_timeout_s + settings.scale_up_timeout_s
        wait = max(retry.max_delay_s, retry.max_retry_after_s)
        return settings.timeout_s + settings.scale_up_max_attempts * (per_try + wait)

    async def aclose(self) -> None:
        """Cancel the requests in flight; each becomes ``cancelled`` and is reported to
        ``on_result``, so a restarted service knows it ended."""
        running = [job for job in self._jobs.values() if job.status not in TERMINAL_STATUSES]
        tasks = [job.task for job in running if job.task and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in running:
            job.status, job.raw_status = "cancelled", "interrupted"
            job.error = "the adapters service stopped while the inference request ran"
            await self._report(job)
        await self._http.aclose()
        await self._inference.aclose()

    async def wait(self, remote_id: str) -> PollResult:
        """Wait until the job's inference request has finished, then poll it."""
        task = self._job("poll", remote_id).task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return await self.poll(remote_id)

    async def pause(self) -> HealthResult:
        """Pause the endpoint (no charge; only ``resume`` starts it again)."""
        return await self._logged("pause", self._transition("pause"))

    async def resume(self) -> HealthResult:
        return await self._logged("resume", self._transition("resume"))

    async def scale_to_zero(self) -> HealthResult:
        """Scale to zero replicas (no charge; the next request cold-starts it)."""
        return await self._logged("scale_to_zero", self._transition("scale-to-zero"))

    async def _submit(self, job: ProviderJob) -> SubmitResult:
        if job.target is not None:
            raise InvalidJobError(
                PROVIDER, "submit", "a per-job target is not supported; set huggingface.name"
            )
        endpoint = await self._describe("submit")
        state = endpoint.status.state
        url = self._settings.endpoint_url or endpoint.status.url
        status = STATUS_MAP.get(state, "unknown")
        reason = None
        if status == "failed":
            reason = f"endpoint is {state}" + ("; resume it first" if state == "paused" else "")
        elif not url:
            reason = f"endpoint has no URL yet (state {state})"
        if reason is not None or url is None:
            return SubmitResult(
                ok=False,
                provider=PROVIDER,
                dry_run=False,
                raw_status=state,
                reason=reason,
                job_id=job.job_id,
            )
        remote_id = f"hf-{uuid.uuid4().hex}"
        record = _Job(remote_id=remote_id, status=status, raw_status=state)
        record.task = asyncio.create_task(self._infer(record, url, job.input))
        self._keep(record)
        return SubmitResult(
            ok=True,
            provider=PROVIDER,
            dry_run=False,
            id=remote_id,
            status=status,
            raw_status=state,
            job_id=job.job_id,
        )

    async def _poll(self, remote_id: str) -> PollResult:
        job = self._jobs.get(remote_id)
        if job is None:
            return self._recorded(self._known_job("poll", remote_id))
        return self._result_of(job)

    def _result_of(self, job: _Job) -> PollResult:
        return PollResult(
            provider=PROVIDER,
            id=job.remote_id,
            dry_run=False,
            status=job.status,
            raw_status=job.raw_status,
            artifacts=find_artifacts(job.output) + [item.path for item in job.saved],
            logs=list(job.logs),
            output=job.output,
            error=job.error,
            saved=list(job.saved),
        )

    def _recorded(self, record: JobRecord) -> PollResult:
        """A job this process does not hold, answered from the events (module docstring)."""
        status, raw, error = record.status or "unknown", record.raw_status, record.error
        where = f"adapters instance {record.instance or 'unknown'}"
        logs = [f"recorded by {where}"]
        if status not in TERMINAL_STATUSES:
            age = time.time() - (record.submitted_at or 0.0)
            if age > self.result_deadline_s:
                status, raw = "failed", "interrupted"
                error = (
                    f"no result was recorded within {self.result_deadline_s:g} s of the "
                    f"submit: the inference request was lost with {where}; submit it again"
                )
            else:
                logs = [f"the inference request runs in {where}; its result is recorded "
                        "when it ends"]  # fmt: skip
        return PollResult(
            provider=PROVIDER, id=record.remote_id, dry_run=False, status=status,  # type: ignore[arg-type]
            raw_status=raw, artifacts=list(record.artifacts), logs=logs, output=record.output,
            error=error, saved=list(record.saved),
        )  # fmt: skip

    def _known_job(self, call: str, remote_id: str) -> JobRecord:
        known = self._options.known
        record = known(PROVIDER, remote_id) if known is not None else None
        if record is None or record.dry_run:
            raise UnknownJobError(
                PROVIDER, call, f"no job {remote_id!r} in this process or in the event log"
            )
        return record

    async def _cancel(self, remote_id: str) -> CancelResult:
        if remote_id not in self._jobs:
            found = self._recorded(self._known_job("cancel", remote_id))
            if not found.terminal:
                raise JobConflictError(
                    PROVIDER, "cancel",
                    f"job {remote_id!r} is not in this process: {found.logs[0]}; only that "
                    "process can stop its request",
                )  # fmt: skip
            return CancelResult(
                ok=True,
                provider=PROVIDER,
                id=remote_id,
                dry_run=False,
                status=found.status,
                raw_status=found.raw_status,
                reason="the job had already ended",
            )
        job = self._job("cancel", remote_id)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        if job.status not in TERMINAL_STATUSES:  # cancelled before the task first ran
            job.status, job.raw_status = "cancelled", "cancelled"
        return CancelResult(
            ok=True,
            provider=PROVIDER,
            id=remote_id,
            dry_run=False,
            status=job.status,
            raw_status=job.raw_status,
        )

    async def _health(self) -> HealthResult:
        endpoint = await self._describe("health")
        return self._health_of(endpoint)

    async def _describe(self, call: str) -> _Endpoint:
        reply = await self._http.request(call, "GET", self._manage, idempotent=True)
        return self._http.decode(call, reply, _Endpoint)

    async def _transition(self, action: str) -> HealthResult:
        call = action.replace("-", "_")
        reply = await self._http.request(
            call, "POST", join_url(self._manage, action), idempotent=True
        )
        return self._health_of(self._http.decode(call, reply, _Endpoint))

    def _health_of(self, endpoint: _Endpoint) -> HealthResult:
        state = HEALTH_MAP.get(endpoint.status.state, "unknown")
        return HealthResult(
            ok=state in ("ready", "scaled_to_zero", "starting"),
            provider=PROVIDER,
            dry_run=False,
            state=state,
            raw_state=endpoint.status.state,
        )

    async def _infer(self, job: _Job, url: str, body: dict[str, Any]) -> None:
        """Run one inference request; its outcome lands in ``job``. Never raises
        except for cancellation, which marks the job cancelled first."""
        settings = self._settings
        headers = {}
        timeout = settings.inference_timeout_s
        if settings.scale_up_timeout_s > 0:
            headers["X-Scale-Up-Timeout"] = str(settings.scale_up_timeout_s)
            timeout += settings.scale_up_timeout_s
        try:
            reply = await self._inference.request(
                "inference",
                "POST",
                join_url(url, settings.inference_path),
                json_body=body,
                headers=headers,
                idempotent=False,
                retry_statuses=NOT_PROCESSED | {503},
                ok_statuses=frozenset({200}),
                timeout_s=timeout,
            )
            store, rid = self._options.artifacts, job.remote_id
            if reply.content_type == "application/json":
                output = self._inference.decode("inference", reply, Any)
                found = await asyncio.to_thread(collect, store, PROVIDER, rid, output)
                if len(reply.body) > MAX_EVENT_OUTPUT_BYTES:  # too big for its event
                    raw_json = await asyncio.to_thread(
                        save_bytes, store, PROVIDER, rid, reply.body, "application/json"
                    )
                    found.saved += raw_json.saved
                    found.notes += raw_json.notes
            else:
                found = await asyncio.to_thread(
                    save_bytes, store, PROVIDER, rid, reply.body, reply.content_type
                )
                job.logs.append(f"received {len(reply.body)} bytes of {reply.content_type}")
            job.output, job.saved = found.output, found.saved
            job.logs += found.notes
            job.status, job.raw_status = "done", f"HTTP {reply.status}"
        except asyncio.CancelledError:
            job.status, job.raw_status = "cancelled", "cancelled"
            raise
        except ProviderError as err:
            job.status, job.error = "failed", err.reason
            job.raw_status = f"HTTP {err.status}" if isinstance(err, ProviderHTTPError) else None
        except Exception as err:  # a bug of ours must not vanish inside a task
            log.exception("huggingface inference task failed")
            job.status, job.error = "failed", f"internal error ({type(err).__name__})"
        await self._report(job)

    async def _report(self, job: _Job) -> None:
        """Hand the ended job to ``on_result`` (the service records it in an event)."""
        if self._options.on_result is None:
            return
        try:
            await self._options.on_result(self._result_of(job))
        except Exception:  # recording is best effort; the job's state stays here
            log.exception("huggingface result not recorded")

    def _job(self, call: str, remote_id: str) -> _Job:
        job = self._jobs.get(remote_id)
        if job is None:
            raise UnknownJobError(PROVIDER, call, f"no job {remote_id!r} in this process")
        return job

    def _keep(self, job: _Job) -> None:
        self._jobs[job.remote_id] = job
        excess = len(self._jobs) - self._settings.max_jobs_kept
        for old in [j for j in self._jobs.values() if j.status in TERMINAL_STATUSES][:excess]:
            del self._jobs[old.remote_id]
