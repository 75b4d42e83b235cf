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


class StoredEvent(msgspec.Struct, frozen=True):
    """One stored event with its global position: an item of a store read, and
    the message on ``stored.<type>``. ``event`` is the event exactly as stored."""

    seq: int
    event: msgspec.Raw


class StoredPage(msgspec.Struct, frozen=True):
    """The reply of ``gpuroute.store.read``; ``last_seq`` is the log's newest position."""

    events: list[StoredEvent]
    last_seq: int = 0


class _EventType(msgspec.Struct):
    type: str


_stored_decoder = msgspec.json.Decoder(StoredEvent)
_page_decoder = msgspec.json.Decoder(StoredPage)
_type_decoder = msgspec.json.Decoder(_EventType)


def decode_stored(raw: bytes) -> StoredEvent:
    return _stored_decoder.decode(raw)


def decode_page(raw: bytes) -> StoredPage:
    return _page_decoder.decode(raw)


def type_of(event: msgspec.Raw | bytes) -> str:
    """An event's ``type`` without decoding the rest of it."""
    return _type_decoder.decode(event).type


def encode_stored(seq: int, event: bytes) -> bytes:
    """Encode a :class:`StoredEvent` from the event's stored bytes (no re-encoding)."""
    return b'{"seq":%d,"event":%s}' % (seq, event)
