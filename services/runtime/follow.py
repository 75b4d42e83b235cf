"""Follow stored events: history after a position, then live, with no gap and
no duplicate at the seam.

Used by ``gpuroute tail`` and the gateway's modder WebSocket. The live side
subscribes to ``stored.<pattern>`` (the store rebroadcasts every committed
event there with its position) *before* the history is read, so an event
committed during the read arrives on both sides and is dropped from the live
side by its position.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.errors
from nats.aio.msg import Msg

from schemas import decode_event
from schemas.subjects import STORE_READ, STORED_PREFIX
from schemas.system import StoreReadRequest, decode_page, decode_stored, encode_stored, type_of
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError
from services.runtime.logs import get_logger

PAGE = 1000
MAX_BUFFERED = 100_000
log = get_logger("follow")
malformed_skipped = 0
"""How many malformed ``stored.*`` messages followers in this process skipped."""


class FollowError(GpurouteError):
    pass


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def valid_pattern(pattern: str) -> bool:
    tokens = pattern.split(".")
    return (
        all(tokens)
        and all(t in ("*", ">") or not any(c in t for c in "*> \t") for t in tokens)
        and ">" not in tokens[:-1]
    )


def literal_prefixes(patterns: list[str]) -> list[str] | None:
    """Type prefixes the store can filter on, one per pattern; None when a
    pattern starts with a wildcard (then every event must be read)."""
    prefixes = [literal_prefix([p]) for p in patterns]
    return None if any(p is None for p in prefixes) else [p for p in prefixes if p]


def literal_prefix(patterns: list[str]) -> str | None:
    """A type prefix the store can filter on, covering every pattern (or None)."""
    if len(patterns) != 1:
        return None
    literal: list[str] = []
    for token in patterns[0].split("."):
        if token in ("*", ">"):
            return ".".join(literal) + "." if literal else None
        literal.append(token)
    return ".".join(literal)


async def follow(bus: Bus, patterns: list[str], after: int | None = None) -> AsyncIterator[bytes]:
    """Yield ``{"seq": N, "event": {...}}`` messages matching ``patterns``.

    ``after=None``: live events only. ``after=N``: every stored event after
    position N first, then live. Raises :class:`FollowError` if the store
    cannot be read or the consumer falls more than ``MAX_BUFFERED`` behind.
    """
    bad = [p for p in patterns if not valid_pattern(p)]
    if bad:
        raise FollowError(f"invalid subject pattern: {bad[0]!r}")
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def on_live(msg: Msg) -> None:
        if queue.qsize() >= MAX_BUFFERED:
            queue.put_nowait(None)  # overflow marker
        else:
            queue.put_nowait((msg.subject, msg.data))

    subs = [await bus.nc.subscribe(STORED_PREFIX + p, cb=on_live) for p in patterns]
    try:
        await bus.nc.flush()
        last = -1
        if after is not None:
            last = after
            async for stored, seq in _history(bus, patterns, after):
                yield stored
                last = seq
        while True:
            live = await queue.get()
            if live is None:
                raise FollowError("follower fell too far behind the live stream")
            subject, data = live
            position = _valid_live(subject, data)
            if position is not None and position > last:
                last = position
                yield data
    finally:
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def _valid_live(subject: str, data: bytes) -> int | None:
    """The position of a ``stored.*`` message, or None (logged and skipped)
    when it is not a stored event of the type its subject names: anyone can
    publish on a subject, and one bad message must not stop a follower."""
    try:
        stored = decode_stored(data)
        event = decode_event(stored.event)
        if STORED_PREFIX + event.type != subject:
            raise ValueError(f"event type {event.type!r} on {subject!r}")
        return stored.seq
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        global malformed_skipped
        malformed_skipped += 1
        log.warning(
            "malformed stored event skipped",
            extra={"fields": {"subject": subject, "reason": " ".join(str(e).split())}},
        )
        return None


async def _history(bus: Bus, patterns: list[str], after: int) -> AsyncIterator[tuple[bytes, int]]:
    prefixes = literal_prefixes(patterns)
    while True:
        req = StoreReadRequest(after=after, limit=PAGE, types=prefixes)
        try:
            raw = await bus.call_raw(STORE_READ, msgspec.json.encode(req))
        except GpurouteError as e:
            raise FollowError(f"cannot read stored events: {e}") from e
        page = decode_page(raw)
        for stored in page.events:
            after = stored.seq
            subject = type_of(stored.event)
            if any(subject_matches(p, subject) for p in patterns):
                yield encode_stored(stored.seq, bytes(stored.event)), stored.seq
        if len(page.events) < PAGE:
            return
