"""The one interface every executor implements (comfyui, command, remote, synthetic).

An executor runs ONE attempt of one job and says how it ended. It knows
nothing of events, leases or retries: the scheduler turns what it reports
into ``job.progress`` / ``job.succeeded`` / ``job.failed`` events, writes the
provenance sidecar of every artifact, and decides about retries and reroutes.

Cancellation and timeouts are plain task cancellation: the scheduler runs
:meth:`Executor.run` in a task and cancels it (``POST /api/jobs/{id}/cancel``,
or ``asyncio.timeout(run.timeout_s)`` ran out). The executor then undoes only
its own work -- kills its process group, deletes its prompt from a ComfyUI
queue or interrupts that prompt alone, cancels the remote job -- and lets
``CancelledError`` propagate. It never swallows a cancellation.

A failure the executor understands is an :class:`Outcome` with ``status``
``failed`` and a reason naming what failed (the node and the error, the exit
code, the provider's answer); ``retryable`` says whether another attempt may
help (a connection refused, a 5xx, a provider timeout: yes; a workflow the
server rejects, exit code 2 of a command: no). Anything it raises instead is
a retryable failure with the exception's text.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from schemas.jobs import JobSpec

Status = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class Run:
    """One attempt of one job, as the scheduler hands it to an executor."""

    job_id: str
    attempt: int
    """1 for the first attempt."""
    spec: JobSpec
    payload: Any
    """What to run, as the client sent it for this executor: a ComfyUI workflow in
    API format, an argv list, a provider input, synthetic parameters. The
    executor validates it (a bad payload is a ``failed``, not retryable, Outcome)."""
    timeout_s: float | None
    workdir: Path
    """``<data-dir>/jobs/<job_id>/<attempt>``, created by the scheduler, mode 0700
    (not created for an executor whose ``uses_workdir`` is False).
    Artifacts go under ``workdir / "artifacts"``."""
    seed: int
    """Derived from the job id: the same job replays with the same seed."""
    provider: str | None = None
    """For ``remote``: the provider the decision chose."""


@dataclass(frozen=True)
class Artifact:
    name: str
    """File name under the attempt's artifacts folder (no path separators)."""
    path: Path
    size: int
    content_type: str
    sha256: str


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str = ""
    retryable: bool = False
    artifacts: tuple[Artifact, ...] = ()
    remote_id: str | None = None
    """The provider's or ComfyUI's id of this attempt (prompt id, prediction id)."""
    provider: str | None = None
    dry_run: bool = False
    """True when nothing real ran (a dry-run provider, a synthetic job)."""
    cost_usd: float | None = None
    exit_code: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """Small, JSON-able facts for the job's history (bounded by the scheduler)."""


class Progress(abc.ABC):
    """Where an executor reports progress; the scheduler bounds and rate-limits it."""

    @abc.abstractmethod
    async def step(self, value: float, maximum: float, node: str | None = None) -> None:
        """``value`` of ``maximum`` done (ComfyUI's ``progress`` message)."""

    @abc.abstractmethod
    async def log(self, line: str, stream: Literal["stdout", "stderr", "info"] = "info") -> None:
        """One line of output (a command's stdout/stderr, an executor's note)."""

    @abc.abstractmethod
    async def remote(self, remote_id: str) -> None:
        """The id the far side gave this attempt, as soon as it is known (so a
        cancel or a restarted scheduler can find it)."""


ProgressFactory = Callable[[Run], Awaitable[Progress]]


class Executor(abc.ABC):
    name: ClassVar[str]
    uses_workdir: ClassVar[bool] = True
    """False: the scheduler does not create ``run.workdir`` (three folders per attempt)."""

    @abc.abstractmethod
    async def run(self, run: Run, progress: Progress) -> Outcome:
        """Run one attempt to its end; see the module docstring for cancellation."""

    async def health(self) -> dict[str, Any]:
        """``{"ok": bool, ...}`` with what the executor can tell (ComfyUI's
        ``/system_stats`` VRAM, the command allow-list, the adapters' answer)."""
        return {"ok": True}

    async def aclose(self) -> None:  # noqa: B027 - most executors hold nothing to release
        """Release connections and sessions (the service is stopping)."""
