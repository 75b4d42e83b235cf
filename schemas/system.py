"""Messages that are not events: heartbeats, store commands, dead letters."""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas import limits


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Published on ``svc.heartbeat`` every few seconds; never stored."""

    service: str
    instance: str
    version: str
    pid: int
    uptime_s: float
    ts: float
    faults: list[str] = []
    """One sentence per background task that died or is waiting to restart
    (``task writer died: RecursionError: ...; restarted 3 times, next in 4 s``);
    empty when all is well."""


class StoreReadRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read events from the store.

    ``after``: global position to read after (0 = from the start).
    ``type``: type prefix (``job.`` matches every job event; ``job.submitted``
    only that type). ``types``: more type prefixes. ``patterns``: NATS subject
    patterns (``*.failed``, ``job.>``) matched against the type. An event is
    returned when it matches any of ``type``, ``types`` and ``patterns`` (every
    event when all are absent). ``key``: exact aggregate key. ``last``: return
    the newest ``limit`` matching events (still in ascending order) instead of
    the oldest after ``after``.

    A reply holds at most ``limit`` events and at most ``limits.MAX_PAGE_BYTES``
    of them (always at least one when one matches); ``StoredPage.more`` says
    whether the page was cut short.
    """

    after: limits.Position = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    type: limits.Pattern | None = None
    key: Annotated[str, msgspec.Meta(max_length=limits.MAX_NAME * 4)] | None = None
    last: bool = False
    types: Annotated[list[limits.Pattern], msgspec.Meta(max_length=limits.MAX_PATTERNS)] | None = (
        None
    )
    patterns: (
        Annotated[list[limits.Pattern], msgspec.Meta(max_length=limits.MAX_PATTERNS)] | None
    ) = None


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """The store's state. Counters (``consumer_recreated``, ``stream_resets``,
    ``broadcast_failures``, ``dlq_publish_failures``, ``delivery_gaps``: the
    consumer's deliveries found lost, each repaired by recreating it) count
    since the store started. ``problems``: one sentence each for what stops or threatens
    storing now, or what an operator must acknowledge
    (``gpuroute.store.acknowledge``); empty when all is well.
    ``stream_created``: the JetStream stream the stored position belongs to."""

    count: int
    last_seq: int
    stream_seq: int
    file_bytes: int
    dead_letters: int
    path: str
    consumer_recreated: int = 0
    stream_resets: int = 0
    broadcast_failures: int = 0
    problems: list[str] = msgspec.field(default_factory=list)
    stream_created: str | None = None
    dlq_publish_failures: int = 0
    delivery_gaps: int = 0


class StoreAcknowledgeRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Acknowledge the store's notices (a stream reset): they leave
    ``StoreStats.problems``. Conditions that still hold stay there."""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool = False
    error: str = ""


class StoredEvent(msgspec.Struct, frozen=True):
    """One stored event with its global position: an item of a store read, and
    the message on ``stored.<type>``. ``event`` is the event exactly as stored."""

    seq: int
    event: msgspec.Raw


class StoredPage(msgspec.Struct, frozen=True):
    """The reply of ``gpuroute.store.read``; ``last_seq`` is the log's newest
    position; ``more``: the page stopped at ``limit`` or at the byte budget, so
    more matching events may follow its last one."""

    events: list[StoredEvent]
    last_seq: int = 0
    more: bool = False


class _EventType(msgspec.Struct):
    type: str


_stored_decoder = msgspec.json.Decoder(StoredEvent)
_page_decoder = msgspec.json.Decoder(StoredPage)
_type_decoder = msgspec.json.Decoder(_EventType)


def decode_stored(raw: bytes) -> StoredEvent:
    return limits.decode(_stored_decoder, raw, max_depth=None, what="stored event")


def decode_page(raw: bytes) -> StoredPage:
    return limits.decode(_page_decoder, raw, max_depth=None, what="store page")


def type_of(event: msgspec.Raw | bytes) -> str:
    """An event's ``type`` without decoding the rest of it."""
    return limits.decode(_type_decoder, event, max_depth=None, what="event").type


def encode_stored(seq: int, event: bytes) -> bytes:
    """Encode a :class:`StoredEvent` from the event's stored bytes (no re-encoding)."""
    return b'{"seq":%d,"event":%s}' % (seq, event)
