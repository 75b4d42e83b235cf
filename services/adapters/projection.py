"""What the adapters service folds from the log, as a projection.

:class:`AdaptersState` is the flags (``flags.changed``) and the job book
(``adapter.submitted`` / ``adapter.status_changed``, see ``tracking.py``);
:class:`AdaptersProjection` folds them, in place. The service follows
:data:`FOLLOWED` through the runtime's follower (``services/runtime/follower.py``).

``instance``: events published by this adapters instance are not folded,
because the service records its own calls in the book as it makes them; an
event that came back from the store later could only put an older status back.
A rebuild (a new instance, a replay) has another instance id and folds them all.

``flags_position`` is the store position of the last ``flags.changed`` folded;
the service sets it (a fold sees no positions), and a snapshot keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from schemas import Event
from schemas.adapters import AdapterStatusChanged, AdapterSubmitted
from schemas.flags import DEFAULTS, FlagsChanged, apply_flags

from .tracking import JobBook, JobRecord

FOLLOWED = ["flags.changed", "adapter.submitted", "adapter.status_changed"]


@dataclass
class AdaptersState:
    flags: dict[str, bool] = field(default_factory=lambda: dict(DEFAULTS))
    book: JobBook = field(default_factory=JobBook)
    flags_position: int = 0


class _Builtins(msgspec.Struct, kw_only=True):
    flags: dict[str, bool]
    jobs: list[JobRecord]
    """Least recently touched first (the book's eviction order)."""
    flags_position: int = 0


class AdaptersProjection:
    name = "adapters"
    type_prefix: str | None = None  # FOLLOWED selects the events
    version = 1
    """Bump when this fold, ``JobBook``'s or ``JobRecord`` changes."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance

    def initial(self) -> AdaptersState:
        return AdaptersState()

    def apply(self, state: AdaptersState, event: Event) -> AdaptersState:
        payload = event.payload
        if isinstance(payload, AdapterSubmitted | AdapterStatusChanged):
            if self.instance is None or payload.instance != self.instance:
                state.book.apply(payload, event.ts)
        elif isinstance(payload, FlagsChanged):
            state.flags = apply_flags(state.flags, payload)
        return state

    def to_builtins(self, state: AdaptersState) -> Any:
        jobs = state.book.records()
        return msgspec.to_builtins(
            _Builtins(flags=dict(sorted(state.flags.items())), jobs=jobs,
                      flags_position=state.flags_position)
        )  # fmt: skip

    def from_builtins(self, data: Any) -> AdaptersState:
        loaded = msgspec.convert(data, _Builtins)
        book = JobBook()
        book.restore(loaded.jobs)
        return AdaptersState(flags=loaded.flags, book=book, flags_position=loaded.flags_position)
