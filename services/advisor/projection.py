"""The provider registry as a replayable projection (``gpuroute replay --projection providers``).

The same fold the advisor runs live (``registry.apply``), over the log's
``provider.*`` events; the snapshot is the registry with its version.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas import Event
from services.advisor import registry
from services.advisor.registry import RegistryState


class ProviderRegistryProjection:
    name = "providers"
    type_prefix: str | None = "provider."

    def initial(self) -> RegistryState:
        return RegistryState()

    def apply(self, state: RegistryState, event: Event) -> RegistryState:
        return registry.apply(state, event.payload)

    def to_builtins(self, state: RegistryState) -> Any:
        return msgspec.to_builtins(state)
