"""``[advisor]``: where the compute advisor reads its files, and how long it
may take to rebuild its state. Its thresholds, constants and price overrides
are a file of their own (``config``, format of ops/advisor.toml), parsed by
``services/advisor/config.py``."""

from __future__ import annotations

from typing import Annotated

import msgspec


class AdvisorSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    config: str | None = None
    """Thresholds, constants and price overrides (format of ops/advisor.toml); None: embedded."""
    seed_file: str | None = None
    """Provider profiles published once on first start; None: the embedded providers.toml."""
    telemetry_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """Ignored: the telemetry service samples now ([telemetry] interval_s). Kept so
    that config files written for older versions still load."""
    ready_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How long start waits for the advisor to rebuild its state from the store."""
