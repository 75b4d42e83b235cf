"""The decision's inputs, as the pure core sees them.

:class:`DecisionContext` holds everything a decision reads besides the job
spec and the config: the telemetry sample, the flags, the provider registry
snapshot and the remote queue depth. The service builds it from its folded
state; a what-if replay rebuilds it from the log. :class:`AdviceRecord` keeps
spec, context and decision together, so ``whatif.what_if`` can re-run
``rules.decide`` on the recorded inputs and compare.

The decision itself (``Decision``, ``Candidate``, ``DecisionDetails``,
``ContextSnapshot``) travels in replies and events, so it lives in
``schemas/advisor.py``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.advisor import Decision
from schemas.jobs import JobSpec
from schemas.telemetry import TelemetrySample
from services.advisor.registry import RegistryState


class DecisionContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the advisor knew when it decided (built from events, never read live).

    ``flags`` are feature flags by name (``features.enable_compute``);
    ``remote_queue_depth`` counts jobs waiting for remote compute.
    """

    telemetry: TelemetrySample
    flags: dict[str, bool] = {}
    registry: RegistryState = RegistryState()
    remote_queue_depth: Annotated[int, msgspec.Meta(ge=0)] = 0


class AdviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A decision with the full inputs it used.

    ``config_digest`` identifies the advisor config (``config.config_digest``).
    """

    job_id: str
    spec: JobSpec
    context: DecisionContext
    decision: Decision
    config_digest: str
