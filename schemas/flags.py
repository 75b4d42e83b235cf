"""Feature flags: changed only by ``flags.changed`` events, so every decision
that depends on a flag replays with the value it saw.

Known flags and their defaults are listed here; a flag not listed is refused
by the flags endpoint (a typo should not silently create a new flag).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.envelope import event_type
from schemas.limits import MAX_NAME

ENABLE_COMPUTE = "features.enable_compute"
ENABLE_PUBLIC_GPU_ADAPTERS = "features.enable_public_gpu_adapters"
ENABLE_PERF = "features.enable_perf"
ENABLE_PERF_BUDGETS = "features.enable_perf_budgets"
ENABLE_PERF_PROFILER_DASHBOARD = "features.enable_perf_profiler_dashboard"

DEFAULTS: dict[str, bool] = {
    ENABLE_COMPUTE: False,
    ENABLE_PUBLIC_GPU_ADAPTERS: False,
    ENABLE_PERF: False,
    ENABLE_PERF_BUDGETS: False,
    ENABLE_PERF_PROFILER_DASHBOARD: False,
}
DESCRIPTIONS: dict[str, str] = {
    ENABLE_COMPUTE: "The advisor may send jobs to remote providers.",
    ENABLE_PUBLIC_GPU_ADAPTERS: "Adapters may make live calls to provider APIs.",
    ENABLE_PERF: "Budgets and the profiler dashboard (turns on both parts below).",
    ENABLE_PERF_BUDGETS: "The budget service delays jobs that do not fit (legacy name).",
    ENABLE_PERF_PROFILER_DASHBOARD: "The profiler dashboard answers (legacy name).",
}


MAX_FLAGS = 64
"""Flags in one change (far more than are known: a bound, not a plan)."""
FlagName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
FlagValues = Annotated[dict[FlagName, bool], msgspec.Meta(max_length=MAX_FLAGS)]


class FlagsChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The flags that changed, with their new values."""

    flags: FlagValues


FlagsChangedEvent = event_type(
    "flags.changed",
    FlagsChanged,
    "Feature flags were changed.",
    publishers=("advisor",),
    readers=("advisor", "adapters", "budget"),
)


def apply_flags(current: dict[str, bool], change: FlagsChanged) -> dict[str, bool]:
    """Pure fold: the flags after ``change`` (unknown names are ignored)."""
    return {**current, **{k: v for k, v in change.flags.items() if k in DEFAULTS}}
