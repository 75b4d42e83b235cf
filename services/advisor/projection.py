"""The advisor's folds as projections (``services.runtime.projection``).

:class:`AdvisorProjection` is what the advisor service folds live: everything
in ``state.FOLLOWED`` into an :class:`AdvisorState`. The provider registry alone
is replayable (``gpuroute replay --projection providers``): the same
``registry.apply`` over the log's ``provider.*`` events; its snapshot is the
registry with its version.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import Event
from schemas.telemetry import TelemetrySample
from services.advisor import registry
from services.advisor.registry import RegistryState
from services.advisor.state import AdvisorEvent, AdvisorState, takes_sample
from services.advisor.state import apply as apply_advisor


class AdvisorProjection:
    """``node``: the node whose telemetry is folded (``AdvisorState.node``)."""

    name = "advisor"
    type_prefix: str | None = None  # the follow() patterns already select the events
    version = 1
    """Bump when ``state.apply`` or ``AdvisorState`` changes: snapshots of another
    version are not loaded."""

    latest_types = ("telemetry.sampled",)
    """Only the newest sample of its node counts: a start reads that one instead of
    every sample in the log (``services/runtime/follower.py``, "Latest wins")."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node

    def takes_latest(self, event: Event) -> bool:
        payload = event.payload
        return isinstance(payload, TelemetrySample) and takes_sample(self.node, payload)

    def initial(self) -> AdvisorState:
        return AdvisorState(node=self.node)

    def apply(self, state: AdvisorState, event: Event) -> AdvisorState:
        payload = event.payload
        if not isinstance(payload, AdvisorEvent):
            return state  # a replay of the whole log: an event the advisor does not follow
        return apply_advisor(state, payload)

    def to_builtins(self, state: AdvisorState) -> Any:
        return msgspec.to_builtins(state)

    def from_builtins(self, data: Any) -> AdvisorState:
        return msgspec.convert(data, AdvisorState)


class ProviderRegistryProjection:
    name = "providers"
    type_prefix: str | None = "provider."
    version = 1

    def initial(self) -> RegistryState:
        return RegistryState()

    def apply(self, state: RegistryState, event: Event) -> RegistryState:
        return registry.apply(state, event.payload)

    def to_builtins(self, state: RegistryState) -> Any:
        return msgspec.to_builtins(state)

    def from_builtins(self, data: Any) -> RegistryState:
        return msgspec.convert(data, RegistryState)
