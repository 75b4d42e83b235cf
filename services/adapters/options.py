"""What every live adapter is built with: the runtime's HTTP policy plus the
adapters service's hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from schemas.adapters import PollResult
from services.runtime.http import HttpOptions

from .artifacts import ArtifactStore
from .tracking import JobRecord

JobLookup = Callable[[str, str], JobRecord | None]
ResultHook = Callable[[PollResult], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class AdapterOptions(HttpOptions):
    """``HttpOptions`` (retry policy, rng, sleep, session, redaction) and the hooks:
    ``artifacts`` (where inline outputs are saved; None: left in ``output``),
    ``known`` (the service's record of a job, by provider and remote id, from the
    ``adapter.*`` events) and ``on_result`` (called when a job ends outside any call,
    e.g. a Hugging Face request)."""

    artifacts: ArtifactStore | None = None
    known: JobLookup | None = None
    on_result: ResultHook | None = None
