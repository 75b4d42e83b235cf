"""Errors raised by the advisor core.

    GpurouteError (services/runtime/errors.py)
    ├── ConfigError (services/runtime/errors.py)
    │   └── AdvisorConfigError      (also an AdvisorError) an advisor config or seed
    │       │                       file is unreadable or invalid
    │       └── UnknownOverride     a what-if price override names what the log never had
    └── AdvisorError                root: catch this to catch everything below
        ├── AdvisorConfigError      (above)
        ├── ProviderNotFound        a cost preview or command named an unknown provider
        ├── CostRequestError        a cost request that cannot be priced (no job, no duration)
        └── WhatIfError             a what-if for one job that cannot be answered
            ├── DecisionNotFound    no decision is recorded for the job (404)
            ├── NotReplayable       its decision cannot be re-run (409)
            └── WhatIfRequestError  it names what the job's context did not have (400)

A config error is the runtime's :class:`ConfigError` (``path``, ``problem``),
so whoever reports a bad file catches one class for every service's files.
Validation of request bodies and event payloads is msgspec's job: its
``msgspec.ValidationError`` already names the bad field with a JSON path
(``Expected `int` >= 1 - at `$.width```) and is passed to callers verbatim,
never wrapped. Telemetry never raises for a missing GPU, driver or NVML
library: that is a normal state reported inside the sample.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.errors import ConfigError, GpurouteError


class AdvisorError(GpurouteError):
    """Root of every error the advisor core raises on purpose."""


class AdvisorConfigError(AdvisorError, ConfigError):
    """A TOML file could not be read or does not match its schema.

    ``path`` is the file; ``problem`` is msgspec's message, which names the field
    (``Expected `float` >= 0.0 - at `$.rules.local_gpu.headroom_gb```).
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        ConfigError.__init__(self, str(path), problem)


class UnknownOverride(AdvisorConfigError):
    """A what-if file's ``[[price_overrides]]`` entry names a provider (or a GPU of
    one) that the replayed log never registered: it would silently change nothing."""


class ProviderNotFound(AdvisorError):
    """No provider with this id is registered (or it was removed)."""

    def __init__(self, provider_id: str) -> None:
        self.provider_id = provider_id
        super().__init__(f"unknown provider {provider_id!r}")


class CostRequestError(AdvisorError):
    """A cost request that names neither a job nor a duration, or an unusable target."""


class WhatIfError(AdvisorError):
    """A what-if for job ``job_id`` that cannot be answered; ``status`` is the
    request/reply error code it travels as."""

    status = 400

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)


class DecisionNotFound(WhatIfError):
    """The store holds no ``job.advised`` for the job (an unknown or unadvised job)."""

    status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"no decision recorded for job {job_id!r} (no job.advised)")


class NotReplayable(WhatIfError):
    """The job's decision was recorded without inputs, its context cannot be
    rebuilt from the log, or the log before it is longer than a request may fold."""

    status = 409


class WhatIfRequestError(WhatIfError):
    """A what-if names a provider that was not registered when the job was advised."""
