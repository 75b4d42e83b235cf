"""The advisor's own projection: what the next decision's context is built from.

``apply(state, payload)`` folds the events the advisor follows: telemetry
samples (the latest wins), provider events (into the registry), flag values and
the remote queue depth. Pure, like every fold: rebuilding it from the log gives
the same state. ``context(state)`` turns it into a ``DecisionContext``.

Flag and queue-depth events belong to other services; their payloads reach this
fold already reduced to :class:`FlagsSet` / :class:`RemoteQueueDepth` by the
wiring, so this module does not depend on their schemas.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.advisor import registry
from services.advisor.decision import DecisionContext
from services.advisor.pricing import ENABLE_COMPUTE, remote_enabled
from services.advisor.registry import ProviderRemoved, ProviderUpserted, RegistryState
from services.advisor.telemetry import GpuDevice, TelemetrySample, empty_sample


class FlagsSet(msgspec.Struct, frozen=True, kw_only=True):
    """Flag values after a change; a flag left out keeps its value."""

    flags: dict[str, bool]


class RemoteQueueDepth(msgspec.Struct, frozen=True, kw_only=True):
    depth: Annotated[int, msgspec.Meta(ge=0)]


AdvisorEvent = TelemetrySample | ProviderUpserted | ProviderRemoved | FlagsSet | RemoteQueueDepth


class AdvisorState(msgspec.Struct, frozen=True, kw_only=True):
    telemetry: TelemetrySample | None = None
    flags: dict[str, bool] = {}
    registry: RegistryState = RegistryState()
    remote_queue_depth: int = 0


def apply(state: AdvisorState, payload: AdvisorEvent) -> AdvisorState:
    """Fold one event the advisor follows."""
    match payload:
        case TelemetrySample():
            return msgspec.structs.replace(state, telemetry=payload)
        case ProviderUpserted() | ProviderRemoved():
            return msgspec.structs.replace(state, registry=registry.apply(state.registry, payload))
        case FlagsSet(flags=flags):
            merged = dict(sorted({**state.flags, **flags}.items()))
            return msgspec.structs.replace(state, flags=merged)
        case RemoteQueueDepth(depth=depth):
            return msgspec.structs.replace(state, remote_queue_depth=depth)
    raise TypeError(f"not an advisor event: {type(payload).__name__}")


def context(state: AdvisorState) -> DecisionContext:
    """The context for a decision now; before any telemetry, a sample saying so."""
    sample = state.telemetry or empty_sample("none", 0.0, "no telemetry sample received yet")
    return DecisionContext(
        telemetry=sample,
        flags=state.flags,
        registry=state.registry,
        remote_queue_depth=state.remote_queue_depth,
    )


class GpuList(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``GET /api/gpu/list``; ``raw`` (the whole sample) only with debug."""

    count: int
    devices: list[GpuDevice]
    reason: str | None
    sample_id: str
    ts: float
    flags: dict[str, bool]
    remote_enabled: bool
    raw: TelemetrySample | None = None


def gpu_list(state: AdvisorState, debug: bool = False) -> GpuList:
    sample = context(state).telemetry
    return GpuList(
        count=len(sample.gpus),
        devices=list(sample.gpus),
        reason=sample.reason,
        sample_id=sample.sample_id,
        ts=sample.ts,
        flags=dict(sorted({ENABLE_COMPUTE: False, **state.flags}.items())),
        remote_enabled=remote_enabled(state.flags),
        raw=sample if debug else None,
    )
