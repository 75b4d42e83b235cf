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
from services.advisor import registry
from services.advisor.registry import RegistryState
from services.advisor.state import AdvisorState
from services.advisor.state import apply as apply_advisor


class AdvisorProjection:
    name = "advisor"
    type_prefix: str | None = None  # the follow() patterns already select the events

    def initial(self) -> AdvisorState:
        return AdvisorState()

    def apply(self, state: AdvisorState, event: Event) -> AdvisorState:
        return apply_advisor(state, event.payload)

    def to_builtins(self, state: AdvisorState) -> Any:
        return msgspec.to_builtins(state)


class ProviderRegistryProjection:
    name = "providers"
    type_prefix: str | None = "provider."

    def initial(self) -> RegistryState:
        return RegistryState()

    def apply(self, state: RegistryState, event: Event) -> RegistryState:
        return registry.apply(state, event.payload)

    def to_builtins(self, state: RegistryState) -> Any:
        return msgspec.to_builtins(state)
