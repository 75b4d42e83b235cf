"""Errors of the budget service.

    GpurouteError (services/runtime/errors.py)
    └── BudgetError               root: catch this to catch everything below
        └── Refused               a command or a recorded change the fold refuses,
                                  having changed nothing: ``status`` (HTTP-like:
                                  404 unknown job or asset, 409 registered twice,
                                  429 full), ``code`` and the sentence (``reason``)

A ``Refused`` never leaves the service as itself: the endpoints turn it into
the runtime's ``EndpointError`` (its ``status`` and ``reason`` go back to the
caller), and a replay or a projection names the refused change and goes on.
Admission decisions are not errors: a job that cannot start yet is ``delayed``
with a reason code (``admission.py``).
"""

from __future__ import annotations

from services.runtime.errors import GpurouteError


class BudgetError(GpurouteError):
    """Root of the errors the budget raises."""


class Refused(BudgetError):
    """A command that changes nothing: ``code`` and the sentence."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        self.status = status
        self.code = code
        self.reason = reason
        super().__init__(reason)
