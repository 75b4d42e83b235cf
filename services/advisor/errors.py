"""Errors raised by the advisor core.

    GpurouteError (services/runtime/errors.py)
    └── AdvisorError                root: catch this to catch everything below
        ├── ConfigError             a config or seed file is unreadable or invalid
        │   └── UnknownOverride     a what-if price override names what the log never had
        ├── ProviderNotFound        a cost preview or command named an unknown provider
        └── CostRequestError        a cost request that cannot be priced (no job, no duration)

Validation of request bodies and event payloads is msgspec's job: its
``msgspec.ValidationError`` already names the bad field with a JSON path
(``Expected `int` >= 1 - at `$.width```) and is passed to callers verbatim, never
wrapped. Telemetry never raises for a missing GPU, driver or NVML library: that
is a normal state reported inside the sample.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.errors import GpurouteError


class AdvisorError(GpurouteError):
    """Root of every error the advisor core raises on purpose."""


class ConfigError(AdvisorError):
    """A TOML file could not be read or does not match its schema.

    ``path`` is the file; ``detail`` is msgspec's message, which names the field
    (``Expected `float` >= 0.0 - at `$.rules.local_gpu.headroom_gb```).
    """

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class UnknownOverride(ConfigError):
    """A what-if file's ``[[price_overrides]]`` entry names a provider (or a GPU of
    one) that the replayed log never registered: it would silently change nothing."""


class ProviderNotFound(AdvisorError):
    """No provider with this id is registered (or it was removed)."""

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        super().__init__(f"unknown provider {provider_id!r}")


class CostRequestError(AdvisorError):
    """A cost request that names neither a job nor a duration, or an unusable target."""
