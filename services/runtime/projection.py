"""Projections: pure folds over the event log, with a checkpoint.

A projection is ``apply(state, event) -> state`` with no clock, no randomness
and no I/O: everything it needs is in the events. Rebuilding from the same
log gives the same state, byte for byte; :func:`state_hash` proves it (sha256
of a canonical encoding: JSON with sorted keys, no whitespace).

For speed a fold may update ``state`` in place and return it; it must never
read anything but ``state`` and ``event``.

A projection declares ``version``, the version of its fold's code: bump it
whenever the fold (or the shape of its state) changes, so that snapshots
saved by the old code are not loaded by the new (``snapshots.py``).
``from_builtins`` is the inverse of ``to_builtins``. The contract every
projection keeps is tested for all of them at once
(``tests/contracts/test_projections.py``, over ``services.cli.PROJECTIONS``).

Bulk folds and snapshots run with the cyclic garbage collector paused: they
allocate millions of short-lived, acyclic objects (freed by reference
counting) while the state grows, and each full collection would walk the whole
state again; on a 1M-event replay that was a quarter of the time. Nothing a
fold builds is cyclic, so nothing is left for the collector to find.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from schemas import Event, decode_event

S = TypeVar("S")


class Projection(Protocol[S]):
    name: str
    type_prefix: str | None
    """Only events whose type starts with this are folded (None: all)."""
    version: int
    """Version of the fold's code; a snapshot of another version is not loaded."""

    def initial(self) -> S: ...

    def apply(self, state: S, event: Event) -> S: ...

    def to_builtins(self, state: S) -> Any:
        """The state as plain JSON-able data, in a canonical form."""
        ...

    def from_builtins(self, data: Any) -> S:
        """The state ``to_builtins`` gave (raises ``msgspec.ValidationError`` or
        ``ValueError`` on data it did not give)."""
        ...


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for a bulk fold (restored even if the fold raises)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Projector(Generic[S]):
    """A projection's state plus its checkpoint (the last position folded)."""

    def __init__(self, projection: Projection[S]) -> None:
        self.projection = projection
        self.state: S = projection.initial()
        self.position = 0

    def reset(self, state: S | None = None, position: int = 0) -> None:
        """Start over from ``state`` at ``position`` (default: the initial state)."""
        self.state = self.projection.initial() if state is None else state
        self.position = position

    def apply(self, seq: int, event: Event) -> None:
        if seq <= self.position:
            return  # already folded: replays and live feeds may overlap
        prefix = self.projection.type_prefix
        if prefix is None or event.type.startswith(prefix):
            self.state = self.projection.apply(self.state, event)
        self.position = seq

    def fold_raw(self, rows: Iterable[tuple[int, str, bytes]]) -> None:
        """Fold (seq, type, body) rows from the event log."""
        apply, decode, position = self.projection.apply, decode_event, self.position
        state = self.state
        with gc_paused():
            for seq, _, body in rows:
                if seq > position:
                    state = apply(state, decode(body))
                    position = seq
        self.state, self.position = state, position

    def snapshot(self) -> Any:
        with gc_paused():
            return self.projection.to_builtins(self.state)

    def hash(self) -> str:
        return state_hash(self.snapshot())


def canonical(value: Any) -> bytes:
    return msgspec.json.encode(value, order="sorted")


def state_hash(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()
