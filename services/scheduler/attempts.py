"""One attempt of one job: run its executor, bound its progress, read its outcome.

:func:`run_attempt` never raises for anything an executor does: a timeout
(``timeout_s`` of the job) is a retryable failure, an exception is a
retryable failure with its text, a ``BadPayload``-style refusal is whatever
Outcome the executor returned. Only cancellation propagates (the job was
cancelled or the service is stopping).

:class:`EventProgress` turns an executor's reports into ``job.progress``
events: steps at most every ``STEP_EVERY_S`` (the last one always), output
lines cut to ``MAX_LINE`` characters, the remote id at once. A step that
completes (``value >= maximum``) is held until anything else is reported or
the attempt ends other than in success: a success says 100% itself (the job
table sets ``progress`` 1.0), so the step right before it would be an event
of no news -- one in six of a short job's events.

:func:`write_sidecars` writes the provenance of every artifact next to it as
``<name>.json``: enough to trace and re-make it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import msgspec

from schemas.jobs import JobSubmitted
from schemas.scheduler import JobProgress
from services.runtime.service import VERSION
from services.scheduler.executors.base import Executor, Outcome, Progress, Run

STEP_EVERY_S = 0.2
MAX_LINE = 2000

Emit = Callable[[msgspec.Struct], Awaitable[None]]


class EventProgress(Progress):
    """Progress of one attempt as ``job.progress`` events through ``emit``."""

    def __init__(self, attempt: int, emit: Emit) -> None:
        self.attempt = attempt
        self._emit = emit
        self._last_step = 0.0
        self._held: JobProgress | None = None
        self.remote_id: str | None = None

    async def step(self, value: float, maximum: float, node: str | None = None) -> None:
        now = time.monotonic()
        if value < maximum and now - self._last_step < STEP_EVERY_S:
            return
        self._last_step = now
        data = JobProgress(attempt=self.attempt, value=value, maximum=maximum, node=node)
        await self.flush()
        if value >= maximum:
            self._held = data
        else:
            await self._emit(data)

    async def log(self, line: str, stream: Literal["stdout", "stderr", "info"] = "info") -> None:
        await self.flush()
        await self._emit(JobProgress(attempt=self.attempt, line=line[:MAX_LINE], stream=stream))

    async def remote(self, remote_id: str) -> None:
        self.remote_id = remote_id
        await self.flush()
        await self._emit(JobProgress(attempt=self.attempt, remote_id=remote_id))

    async def flush(self) -> None:
        """Send the held completed step, if any."""
        held, self._held = self._held, None
        if held is not None:
            await self._emit(held)


async def run_attempt(executor: Executor, run: Run, progress: Progress) -> Outcome:
    """The attempt's outcome; a timeout or an exception is a retryable failure.
    Unless it succeeded, a completed step :class:`EventProgress` held is sent first."""
    outcome = await _run(executor, run, progress)
    if outcome.status != "succeeded" and isinstance(progress, EventProgress):
        await progress.flush()
    return outcome


async def _run(executor: Executor, run: Run, progress: Progress) -> Outcome:
    try:
        async with asyncio.timeout(run.timeout_s):
            return await executor.run(run, progress)
    except TimeoutError:
        return Outcome(status="failed", retryable=True,
                       reason=f"timeout: attempt {run.attempt} ran past {run.timeout_s:g}s",
                       details={"code": "timeout"})  # fmt: skip
    except asyncio.CancelledError:
        raise
    except Exception as e:  # an executor's bug must not stop the job: another attempt may do
        return Outcome(
            status="failed",
            retryable=True,
            reason=f"{executor.name} executor raised {type(e).__name__}: {e}",
        )


def seed_of(job_id: str) -> int:
    """A job's seed: the same job id gives the same seed (31 bits)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


def workdir_of(data_dir: Path, job_id: str, attempt: int, *, create: bool = True) -> Path:
    """``<data-dir>/jobs/<job>/<attempt>``; with ``create``, each missing folder is
    made 0700 (whatever the umask: chmod after mkdir); folders already there
    are left as they are."""
    path = Path(data_dir, "jobs", job_id, str(attempt))  # one Path, not three joins
    if create:
        for part in (data_dir, data_dir / "jobs", path.parent, path):
            try:
                os.mkdir(part, 0o700)
            except FileExistsError:
                continue
            os.chmod(part, 0o700)
    return path


def payload_hash(payload: Any) -> str:
    """sha256 of the payload's canonical JSON (sorted keys): the workflow or command."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def write_sidecars(
    outcome: Outcome,
    run: Run,
    request: JobSubmitted,
    *,
    executor: str,
    rule: str | None,
    times: dict[str, float],
) -> None:
    """``<artifact>.json`` beside every artifact (mode 0600)."""
    for artifact in outcome.artifacts:
        sidecar = {
            "job_id": run.job_id, "attempt": run.attempt, "artifact": artifact.name,
            "size": artifact.size, "sha256": artifact.sha256,
            "content_type": artifact.content_type,
            "spec": msgspec.to_builtins(request.spec), "executor": executor,
            "payload": request.payload, "payload_sha256": payload_hash(request.payload),
            "seed": run.seed, "provider": outcome.provider or run.provider,
            "remote_id": outcome.remote_id, "dry_run": outcome.dry_run,
            "decision_rule": rule, "gpuroute_version": VERSION, "times": times,
        }  # fmt: skip
        path = artifact.path.with_name(artifact.name + ".json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(sidecar, f, indent=2, sort_keys=True)
