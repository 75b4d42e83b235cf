"""Messages that are not events: heartbeats, store commands, dead letters."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Published on ``svc.heartbeat`` every few seconds; never stored."""

    service: str
    instance: str
    version: str
    pid: int
    uptime_s: float
    ts: float


class StoreReadRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read events from the store.

    ``after``: global position to read after (0 = from the start).
    ``type``: type prefix (``job.`` matches every job event; ``job.submitted``
    only that type). ``key``: exact aggregate key. ``last``: return the newest
    ``limit`` matching events (still in ascending order) instead of the oldest
    after ``after``. ``types``: more type prefixes; an event matching any of
    ``type`` and ``types`` is returned.
    """

    after: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    type: str | None = None
    key: str | None = None
    last: bool = False
    types: list[str] | None = None


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    count: int
    last_seq: int
    stream_seq: int
    file_bytes: int
    dead_letters: int
    path: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool = False
    error: str = ""
