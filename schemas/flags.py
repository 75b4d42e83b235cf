"""Feature flags: changed only by ``flags.changed`` events, so every decision
that depends on a flag replays with the value it saw.

Known flags and their defaults are listed here; a flag not listed is refused
by the flags endpoint (a typo should not silently create a new flag).
"""

from __future__ import annotations

import msgspec

from schemas.envelope import event_type

ENABLE_COMPUTE = "features.enable_compute"
ENABLE_PUBLIC_GPU_ADAPTERS = "features.enable_public_gpu_adapters"

DEFAULTS: dict[str, bool] = {
    ENABLE_COMPUTE: False,
    ENABLE_PUBLIC_GPU_ADAPTERS: False,
}
DESCRIPTIONS: dict[str, str] = {
    ENABLE_COMPUTE: "The advisor may send jobs to remote providers.",
    ENABLE_PUBLIC_GPU_ADAPTERS: "Adapters may make live calls to provider APIs.",
}


class FlagsChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The flags that changed, with their new values."""

    flags: dict[str, bool]


FlagsChangedEvent = event_type("flags.changed", FlagsChanged, "Feature flags were changed.")


def apply_flags(current: dict[str, bool], change: FlagsChanged) -> dict[str, bool]:
    """Pure fold: the flags after ``change`` (unknown names are ignored)."""
    return {**current, **{k: v for k, v in change.flags.items() if k in DEFAULTS}}
