"""The advisor's own projection: what the next decision's context is built from.

``apply(state, payload)`` folds the payloads of the events the advisor follows
(:data:`FOLLOWED`): telemetry samples of the node it decides for (the latest
wins), provider events (into the registry), flag changes and the remote queue
depth. Pure, like every fold:
folding the same events of the log up to a position gives the same state, which
is how a what-if replay rebuilds the context of a recorded decision.
``context(state)`` turns it into a ``DecisionContext``.
"""

from __future__ import annotations

import msgspec

from schemas.advisor import GpuList, QueueDepthChanged
from schemas.flags import DEFAULTS, FlagsChanged, apply_flags
from schemas.providers import ProviderRemoved, ProviderUpserted
from schemas.telemetry import TelemetrySample, empty_sample
from services.advisor import registry
from services.advisor.decision import DecisionContext
from services.advisor.pricing import remote_enabled
from services.advisor.registry import RegistryState

FOLLOWED = ("flags.changed", "provider.>", "queue.depth.changed", "telemetry.sampled")
"""Subject patterns of the events folded here (and nothing else)."""

REMOTE_QUEUE = "remote"

AdvisorEvent = (
    TelemetrySample | ProviderUpserted | ProviderRemoved | FlagsChanged | QueueDepthChanged
)


class AdvisorState(msgspec.Struct, frozen=True, kw_only=True):
    """``flags`` holds only flags set by events; :func:`all_flags` fills in defaults.

    ``node`` is the node whose telemetry the decisions use, fixed when the state
    is made (the service passes ``[telemetry] node``); ``telemetry`` is its latest
    sample. None: samples of any node (a log from before node ids, tests)."""

    telemetry: TelemetrySample | None = None
    flags: dict[str, bool] = {}
    registry: RegistryState = RegistryState()
    remote_queue_depth: int = 0
    node: str | None = None


def apply(state: AdvisorState, payload: AdvisorEvent) -> AdvisorState:
    """Fold one event the advisor follows. A sample of another node than
    ``state.node``, a flag not in ``schemas.flags.DEFAULTS`` and a queue other
    than ``remote`` change nothing. A sample without a node (written before node
    ids, by the advisor's own sampler) counts for every node."""
    match payload:
        case TelemetrySample():
            if not takes_sample(state.node, payload):
                return state
            return msgspec.structs.replace(state, telemetry=payload)
        case ProviderUpserted() | ProviderRemoved():
            return msgspec.structs.replace(state, registry=registry.apply(state.registry, payload))
        case FlagsChanged():
            flags = dict(sorted(apply_flags(state.flags, payload).items()))
            return msgspec.structs.replace(state, flags=flags)
        case QueueDepthChanged(depth=depth, queue=queue):
            if queue != REMOTE_QUEUE:
                return state
            return msgspec.structs.replace(state, remote_queue_depth=depth)
    raise TypeError(f"not an advisor event: {type(payload).__name__}")


def takes_sample(node: str | None, sample: TelemetrySample) -> bool:
    """Whether the advisor of ``node`` folds ``sample``: its own node's, a node-less
    one, or any when ``node`` is None. A sample it folds replaces the last one
    whole, and nothing else reads or writes ``telemetry``: only the newest it
    takes counts ("latest wins", ``AdvisorProjection.latest_types``)."""
    return sample.node is None or node is None or sample.node == node


def all_flags(state: AdvisorState) -> dict[str, bool]:
    """Every known flag: the defaults, overridden by what events set."""
    return dict(sorted({**DEFAULTS, **state.flags}.items()))


def context(state: AdvisorState) -> DecisionContext:
    """The context for a decision now; before any telemetry, a sample saying so."""
    sample = state.telemetry or empty_sample("none", 0.0, "no telemetry sample received yet")
    return DecisionContext(
        telemetry=sample,
        flags=state.flags,
        registry=state.registry,
        remote_queue_depth=state.remote_queue_depth,
    )


def gpu_list(state: AdvisorState, debug: bool = False) -> GpuList:
    """Body of ``GET /api/gpu/list``: the latest sample, the flags, raw with debug."""
    sample = context(state).telemetry
    return GpuList(
        count=len(sample.gpus),
        devices=list(sample.gpus),
        reason=sample.reason,
        sample_id=sample.sample_id,
        ts=sample.ts,
        flags=all_flags(state),
        remote_enabled=remote_enabled(state.flags),
        raw=sample if debug else None,
    )
