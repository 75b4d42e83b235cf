"""The ``remote`` executor: a job at a GPU provider, through the adapters service.

Payload: ``{"input": {...}, "target": "owner/model", "provider": "runpod"}``; the
provider is the one the decision chose (``run.provider``), else the payload's.
The job handed over is the run's spec plus that input (``ProviderJob``), with
``job_id`` and the run's seed, so a dry-run provider gives the same job the same id.

Calls (``schemas/adapters.py``) go over NATS through ``caller.call_raw``:
``gpuroute.adapters.submit`` once, ``poll`` every ``poll_s`` until a terminal
status, ``cancel`` when the attempt is cancelled or times out. New log lines
and the provider's progress (0..1) are reported as they appear. A refusal
(``ok: false``: missing token, paused endpoint) and a 4xx are failures that
another attempt at the same provider will not fix; a 429, 5xx, no answer, or
``max_poll_failures`` poll errors in a row are retryable. A job that ends
``failed``/``timed_out`` at the provider is retryable (the scheduler reroutes).

Artifacts: outputs the adapters service saved (``PollResult.saved``) are copied
into the attempt's artifacts when that path exists on this host (one machine
under ``gpuroute up``); output URLs are listed in ``details["urls"]``. Dry-run and
sim providers answer the same calls; the outcome then says ``dry_run: true``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Protocol

import msgspec

from schemas import limits
from schemas.adapters import (
    CANCEL,
    POLL,
    PROVIDERS,
    SUBMIT,
    CancelRequest,
    PollRequest,
    PollResult,
    ProviderJob,
    ProviderName,
    SubmitRequest,
    SubmitResult,
)
from schemas.scheduler_settings import RemoteSettings
from services.runtime.errors import ServiceCallError

from . import artifacts
from .base import Artifact, Executor, Outcome, Progress, Run
from .payloads import BadPayload, convert

MAX_URLS = 64


class Caller(Protocol):
    """What the executor needs of the Bus: one request, raw bytes back; a failure
    is a ``ServiceCallError`` carrying the endpoint's code."""

    async def call_raw(self, subject: str, payload: bytes, timeout: float = 5.0) -> bytes: ...


class RemotePayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    input: dict[str, Any] = {}
    target: str | None = None
    provider: ProviderName | None = None


class _Failed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def _retryable(code: int) -> bool:
    return code == 429 or code >= 500


class RemoteExecutor(Executor):
    name = "remote"

    def __init__(self, settings: RemoteSettings, caller: Caller) -> None:
        self.settings = settings
        self.caller = caller

    async def _call(self, subject: str, request: Any, reply: type[Any], provider: str) -> Any:
        try:
            raw = await self.caller.call_raw(
                subject, msgspec.json.encode(request), self.settings.call_timeout_s
            )
            return limits.decode(
                limits.decoder_for(reply),
                raw,
                max_bytes=limits.MAX_PAGE_BYTES,
                what=f"{subject} reply",
            )
        except ServiceCallError as e:
            raise _Failed(Outcome(
                "failed", f"{subject}: {e.code} {e.description}", retryable=_retryable(e.code),
                provider=provider,
            )) from e  # fmt: skip
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _Failed(Outcome("failed", f"{subject}: malformed reply: {e}",
                                  retryable=True, provider=provider)) from e  # fmt: skip

    async def run(self, run: Run, progress: Progress) -> Outcome:
        try:
            payload = convert(run.payload, RemotePayload, "remote")
            provider = run.provider or payload.provider
            if provider is None:
                raise BadPayload("remote payload: no provider (the decision chose none and "
                                 "the payload names none)")  # fmt: skip
            if provider not in PROVIDERS:
                raise BadPayload(f"remote: provider {provider!r} is not one of "
                                 f"{', '.join(PROVIDERS)}")  # fmt: skip
        except BadPayload as e:
            return Outcome("failed", str(e))
        job = ProviderJob(**msgspec.structs.asdict(run.spec), input=payload.input,
                          job_id=run.job_id, target=payload.target, seed=run.seed)  # fmt: skip
        request = SubmitRequest(provider=provider, job=job)
        try:
            return await self._run(run, request, progress)
        except _Failed as failed:
            return failed.outcome

    async def _run(self, run: Run, request: SubmitRequest, progress: Progress) -> Outcome:
        provider = request.provider
        sub: SubmitResult = await self._call(SUBMIT, request, SubmitResult, provider)
        if not sub.ok or sub.id is None:
            return Outcome("failed", f"{provider} refused the job: {sub.reason or 'no id'}",
                           provider=provider, dry_run=sub.dry_run)  # fmt: skip
        await progress.remote(sub.id)
        poll = PollRequest(provider=provider, id=sub.id, job_id=run.job_id)
        try:
            result = await self._follow(poll, progress)
        except BaseException:
            await self._cancel(poll)
            raise
        return self._outcome(run, result)

    async def _follow(self, poll: PollRequest, progress: Progress) -> PollResult:
        logs_seen, failures = 0, 0
        while True:
            try:
                result: PollResult = await self._call(POLL, poll, PollResult, poll.provider)
            except _Failed as failed:
                failures += 1
                if not failed.outcome.retryable or failures >= self.settings.max_poll_failures:
                    raise
                await asyncio.sleep(self.settings.poll_s)
                continue
            failures = 0
            for line in result.logs[logs_seen:]:
                await progress.log(line)
            logs_seen = max(logs_seen, len(result.logs))
            if result.progress is not None:
                await progress.step(result.progress, 1.0)
            if result.terminal:
                return result
            await asyncio.sleep(self.settings.poll_s)

    async def _cancel(self, poll: PollRequest) -> None:
        """Best effort: the attempt ends cancelled whatever the provider answers."""
        request = CancelRequest(provider=poll.provider, id=poll.id, job_id=poll.job_id)
        try:
            await self.caller.call_raw(
                CANCEL, msgspec.json.encode(request), self.settings.call_timeout_s
            )
        except (ServiceCallError, OSError):
            pass

    def _outcome(self, run: Run, result: PollResult) -> Outcome:
        base: dict[str, Any] = {"remote_id": result.id, "provider": result.provider,
                                "dry_run": result.dry_run}  # fmt: skip
        details: dict[str, Any] = {"raw_status": result.raw_status} if result.raw_status else {}
        urls = [a for a in result.artifacts if "://" in a][:MAX_URLS]
        if urls:
            details["urls"] = urls
        if result.status == "done":
            return Outcome("succeeded", artifacts=_copy_saved(run, result), details=details,
                           **base)  # fmt: skip
        reason = f"{result.provider} job {result.id} ended {result.status}"
        if result.error:
            reason += f": {result.error}"
        retryable = result.status in ("failed", "timed_out")
        return Outcome("failed", reason, retryable=retryable, details=details, **base)


def _copy_saved(run: Run, result: PollResult) -> tuple[Artifact, ...]:
    taken: set[str] = set()
    out = []
    for saved in result.saved:
        source = Path(saved.path)
        if not source.is_file():
            continue  # saved on another host: the adapters service still has it
        target = artifacts.folder(run) / artifacts.safe_name(source.name, taken)
        shutil.copyfile(source, target)
        target.chmod(0o600)
        out.append(artifacts.describe(target))
    return tuple(out)
