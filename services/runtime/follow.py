"""Follow stored events: history after a position, then live, in order, with
no gap, no duplicate, and no position the store does not hold.

Used by ``gpuroute tail``, the gateway's modder WebSocket, the advisor and the
adapters. The live side subscribes to ``stored.<pattern>`` (the store
rebroadcasts every committed event there with its position) *before* the
history is read, so an event committed during the read arrives on both sides
and is dropped from the live side by its position.

The broadcast is core NATS: a message can be lost (a store or NATS restart)
and anyone may publish one. So a live position is believed only when the
store confirms it:

- the next position (``last + 1``) is taken as is;
- a jump (for a follower of some types, the events in between may simply be
  of other types), or a first live message with nothing to compare it to, is
  checked by one store read from ``last`` up to the highest position queued at
  that moment (coalesced: however many messages are queued, one read). What
  the read returns is yielded, in order, before anything newer; queued
  messages it covers are dropped, and queued messages at positions the store
  does not hold are dropped and counted as forged;
- after ``quiet_s`` without a live message the store is asked for anything
  after ``last`` (a lost broadcast with nothing after it).

Live messages wait in a buffer bounded in bytes; a consumer that lets it fill
gets :class:`FollowerBehind`, carrying the position to resume after.

Two faces over one mechanism: :func:`follow` yields the ``stored.*`` bytes
(``gpuroute tail``, the WebSocket), :func:`follow_events` yields each event
decoded once (the services' :class:`~services.runtime.follower.Follower`):
history pages are decoded straight into typed events in one pass, live
messages keep the event their check decoded.

A consumer that leaves out of its patterns events it wrote and folded itself
(:meth:`~services.runtime.follower.Follower.own`: the budget's writer) still
needs its position to move past them, or a snapshot would name a position long
behind its state. With ``advance``, a quiet spell also asks the store for its
newest event *before* the read for anything new: every matching event up to
that one is then in the read, so once it is yielded the position moves to that
event (an :class:`Item` with ``moved``: its id, nothing to fold).

:class:`Stop` ends a follow from outside at its next step (the follower then
follows again with other patterns).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import msgspec

from schemas import Event, decode_event, event_types, limits
from schemas.subjects import STORE_READ, STORED_PREFIX
from schemas.system import (
    StoredPage,
    StoreReadRequest,
    decode_page,
    decode_stored,
    encode_stored,
)
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError, ServiceCallError
from services.runtime.logs import get_logger
from services.runtime.tap import RawSubscription, subscribe_raw

PAGE = 1000
MAX_BUFFER_BYTES = 4 * 1024 * 1024
"""Default bound of the live buffer of one follower."""
QUIET_S = 3.0
"""Seconds without a live message after which the store is asked what is new."""
READ_ATTEMPTS = 5
"""Store reads tried (0.1 s backoff, doubling) before :class:`FollowError`:
a store that restarts answers again within them."""
MAX_STORED_BYTES = limits.MAX_EVENT_BYTES + 64
"""Largest ``stored.*`` message: an event and its ``{"seq":N,"event":...}``."""

log = get_logger("follow")
malformed_skipped = 0
"""Malformed ``stored.*`` messages skipped by every follower in this process;
each follower counts its own in :attr:`FollowStats.skipped`."""


class FollowError(GpurouteError):
    pass


class Item(NamedTuple):
    """One followed event: its position and the event, as stored (``raw``) and/or
    decoded (``event``); ``error`` says why an event the store holds did not decode
    (typed reads only: the position still counts as read)."""

    seq: int
    raw: bytes | None
    event: Event | None = None
    error: str | None = None
    moved: str | None = None
    """No event: every matching event up to ``seq`` was yielded, and ``moved`` is the
    id of the (unmatched) event the store holds at ``seq`` (``advance``)."""


class FollowerBehind(FollowError):
    """The consumer let more than the buffer's bytes of live events wait.
    ``last``: every matching event up to this position was yielded; follow
    again with ``after=last`` to resume without a gap."""

    def __init__(self, last: int, limit: int) -> None:
        self.last = last
        self.limit = limit
        super().__init__(
            f"follower fell behind the live stream (over {limit} bytes waiting): "
            f"reconnect with after={last}"
        )


@dataclass
class FollowStats:
    """What one follower saw; pass one to :func:`follow` to read it."""

    skipped: int = 0
    """Malformed ``stored.*`` messages (not a stored event of the subject's type)."""
    forged: int = 0
    """Well-formed ``stored.*`` messages at a position the store does not hold."""
    reads: int = 0
    """Store reads made to check a jump or a quiet spell (history not counted)."""
    recovered: int = 0
    """Events a check read yielded that never arrived live (lost broadcasts)."""
    last: int | None = None
    """Position of the last yielded event (or of the start, before any)."""
    received: int = 0
    """Live messages taken into the buffer."""
    moved: int = 0
    """Quiet spells that moved the position past unmatched events (``advance``)."""
    waiting: int = 0
    """Bytes of live messages waiting in the buffer now."""
    behind: bool = False
    """The buffer overflowed (and was emptied): the next step raises
    :class:`FollowerBehind`."""


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
        0 < len(pattern.encode()) <= limits.MAX_SUBJECT_BYTES
        and all(tokens)
        and all(t in ("*", ">") or not any(c in t for c in "*> \t\r\n") for t in tokens)
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


async def follow(
    bus: Bus,
    patterns: list[str],
    after: int | None = None,
    *,
    stats: FollowStats | None = None,
    max_buffer_bytes: int = MAX_BUFFER_BYTES,
    quiet_s: float = QUIET_S,
) -> AsyncIterator[bytes]:
    """Yield ``{"seq": N, "event": {...}}`` messages matching ``patterns``, in
    ascending position.

    ``after=None``: events after the store's position when follow starts.
    ``after=N``: every stored event after position N first, then live. Raises
    :class:`FollowError` if the store cannot be read (after ``READ_ATTEMPTS``)
    and :class:`FollowerBehind` when the live buffer passes
    ``max_buffer_bytes``.
    """
    items = _follow(bus, patterns, after, stats, max_buffer_bytes, quiet_s, typed=False)
    async for item in items:
        assert item.raw is not None  # untyped reads keep every event's bytes
        yield encode_stored(item.seq, item.raw)


async def follow_events(
    bus: Bus,
    patterns: list[str],
    after: int | None = None,
    *,
    stats: FollowStats | None = None,
    max_buffer_bytes: int = MAX_BUFFER_BYTES,
    quiet_s: float = QUIET_S,
    advance: bool = False,
    stop: Stop | None = None,
) -> AsyncIterator[Item]:
    """Like :func:`follow`, but each :class:`Item` carries the decoded event
    (``event``), or ``error`` for a stored event that no longer decodes (a
    schema change, a bug): one bad event never stops a follower. ``advance``:
    quiet spells also move the position (``Item.moved``); ``stop``: return at
    the next step once it is set (see the module docstring)."""
    items = _follow(bus, patterns, after, stats, max_buffer_bytes, quiet_s, typed=True,
                    advance=advance, stop=stop)  # fmt: skip
    async for item in items:
        if item.event is not None or item.error is not None or item.moved is not None:
            yield item
            continue
        assert item.raw is not None
        try:
            yield item._replace(event=decode_event(item.raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            yield item._replace(error=" ".join(str(e).split()))


async def _follow(
    bus: Bus,
    patterns: list[str],
    after: int | None,
    stats: FollowStats | None,
    max_buffer_bytes: int,
    quiet_s: float,
    *,
    typed: bool,
    advance: bool = False,
    stop: Stop | None = None,
) -> AsyncIterator[Item]:
    bad = [p for p in patterns if not valid_pattern(p)]
    if bad or not patterns:
        raise FollowError(f"invalid subject pattern: {bad[0] if bad else ''!r}")
    if len(patterns) > limits.MAX_PATTERNS:
        raise FollowError(
            f"{len(patterns)} subject patterns, over the limit of {limits.MAX_PATTERNS}"
        )
    stats = stats if stats is not None else FollowStats()
    live = _Live(stats, max_buffer_bytes)
    store = _Store(bus, patterns, stats, typed=typed)
    subs: list[RawSubscription] = []
    if stop is not None:
        stop.wakes.append(live.wake)
    try:
        for p in patterns:  # inside the try: a failure ends the ones made before it
            subs.append(await subscribe_raw(bus.nc, STORED_PREFIX + p, live.on_message))
        await bus.flush()
        last = after if after is not None else await store.position()
        stats.last = last
        if last is not None:
            async for item in store.read(last, None):
                live.check(last)
                last = stats.last = item.seq
                yield item
                if stop is not None and stop.is_set:
                    return
        while stop is None or not stop.is_set:
            live.check(last)
            batch = live.take()
            if not batch:
                if not await live.wait(quiet_s):
                    if last is None:
                        last = stats.last = await store.position()
                        continue
                    newest = await store.newest() if advance else None
                    async for item in store.read(last, None, check=True):
                        stats.recovered += 1
                        last = stats.last = item.seq
                        yield item
                    if newest is not None and newest.seq > last:
                        stats.moved += 1
                        last = stats.last = newest.seq
                        yield newest
                continue
            for i, item in enumerate(batch):
                seq = item.seq
                if last is not None and seq <= last:
                    continue  # already yielded (history, or a check read)
                if last is not None and seq == last + 1:
                    last = stats.last = seq
                    yield item
                    continue
                async for checked in _check(store, batch[i:], last):
                    last = stats.last = checked.seq
                    yield checked
                break
    finally:
        if stop is not None:
            stop.wakes.remove(live.wake)
        for sub in subs:
            await sub.unsubscribe()


async def _check(store: _Store, queued: list[Item], last: int | None) -> AsyncIterator[Item]:
    """One store read covering every queued message: yield what the store
    holds from ``last`` up to the highest queued position; count queued
    positions it does not hold as forged."""
    seqs = {item.seq for item in queued}
    start = last if last is not None else min(seqs) - 1
    unconfirmed = {s for s in seqs if s > start}
    async for item in store.read(start, max(seqs), check=True):
        if item.seq not in seqs:
            store.stats.recovered += 1
        unconfirmed.discard(item.seq)
        # above the store's newest position: forged, known before the rest is read
        _forged(store, {s for s in unconfirmed if s > store.last_seq}, unconfirmed)
        yield item
    _forged(store, set(unconfirmed), unconfirmed)  # the read is complete: none is real


def _forged(store: _Store, forged: set[int], unconfirmed: set[int]) -> None:
    if not forged:
        return
    unconfirmed -= forged
    store.stats.forged += len(forged)
    log.warning(
        "stored.* messages at positions the store does not hold dropped",
        extra={"fields": {"count": len(forged), "first": min(forged),
                          "store_last_seq": store.last_seq}},
    )  # fmt: skip


class Stop:
    """Set from outside to end a follow at its next step (a follow waiting
    for a live message wakes); it returns, its subscriptions ended."""

    def __init__(self) -> None:
        self.is_set = False
        self.wakes: list[asyncio.Event] = []

    def set(self) -> None:
        self.is_set = True
        for wake in self.wakes:
            wake.set()


class _Live:
    """The live side: checked ``stored.*`` messages in arrival order, bounded in bytes."""

    def __init__(self, stats: FollowStats, max_bytes: int) -> None:
        self.stats = stats
        self.max_bytes = max_bytes
        self.items: deque[Item] = deque()
        self.bytes = 0
        self.overflow = False
        self.wake = asyncio.Event()

    def on_message(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """A ``stored.*`` message, tapped (``services/runtime/tap.py``)."""
        if self.overflow:
            return
        item = _valid_live(subject.decode(errors="replace"), data, self.stats)
        if item is None:
            return
        size = len(data)
        if self.bytes + size > self.max_bytes:
            self.overflow = self.stats.behind = True  # free the memory now; the
            self.items.clear()  # consumer learns on its next step
            self.bytes = 0
        else:
            self.items.append(item)
            self.bytes += size
            self.stats.received += 1
        self.stats.waiting = self.bytes
        self.wake.set()

    def check(self, last: int | None) -> None:
        if self.overflow:
            raise FollowerBehind(last or 0, self.max_bytes)

    def take(self) -> list[Item]:
        items = list(self.items)
        self.items.clear()
        self.bytes = self.stats.waiting = 0
        self.wake.clear()
        return items

    async def wait(self, timeout: float) -> bool:
        """Wait for a live message; False after ``timeout`` seconds without one."""
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
            return True
        except TimeoutError:
            return False


class _Store:
    """Reads of the store for one follower: history, checks, its position."""

    def __init__(
        self, bus: Bus, patterns: list[str], stats: FollowStats, *, typed: bool = False
    ) -> None:
        self.bus = bus
        self.patterns = patterns
        self.stats = stats
        self.typed = typed
        self.last_seq = 0  # the store's newest position, as of the latest read
        # the store matches patterns through its index (exactly: no check here);
        # ">" is every event: no filter
        self._filter = None if ">" in patterns else list(patterns)

    async def position(self) -> int | None:
        """The store's newest position, or None when it cannot be read now."""
        try:
            page = await self._page(StoreReadRequest(limit=1, last=True), attempts=1)
        except FollowError as e:
            log.debug("store position unknown", extra={"fields": {"error": str(e)}})
            return None
        return page.last_seq

    async def newest(self) -> Item | None:
        """The newest event the store holds, as an :class:`Item` that moves the
        position to it (``moved``: its id); None when there is none or the
        store cannot be read now."""
        try:
            page = await self._page(StoreReadRequest(limit=1, last=True), attempts=1)
            if not page.events:
                return None
            stored = page.events[-1]
            return Item(stored.seq, None, moved=_head_decoder.decode(stored.event).id)
        except (FollowError, msgspec.DecodeError, msgspec.ValidationError) as e:
            log.debug("newest stored event unknown", extra={"fields": {"error": str(e)}})
            return None

    async def read(
        self, after: int, until: int | None, *, check: bool = False
    ) -> AsyncIterator[Item]:
        """Matching events after ``after``, page by page, until the store has
        no more or a page reaches ``until``."""
        while True:
            if check:
                self.stats.reads += 1
            req = StoreReadRequest(after=after, limit=PAGE, patterns=self._filter)
            payload = msgspec.json.encode(req)
            raw = await self._call(payload, READ_ATTEMPTS)
            page = self._typed_page(raw) if self.typed else None
            items, more = page if page is not None else self._raw_page(raw)
            for item in items:
                if item.seq <= after:
                    continue
                after = item.seq
                yield item
            # a full page without "more" is asked once more: a store that
            # predates "more" ends its pages only by being short
            more = more or len(items) >= PAGE
            if not more or not items or (until is not None and after >= until):
                return

    def _typed_page(self, raw: bytes) -> tuple[list[Item], bool] | None:
        """The page decoded in one pass into typed events; None when any event in
        it does not decode (then each is decoded alone, to name the bad one)."""
        try:
            page = limits.decode(_typed_page_decoder(), raw, max_depth=None, what="store page")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        self.last_seq = max(self.last_seq, page.last_seq)
        return [Item(s.seq, None, s.event) for s in page.events], page.more

    def _raw_page(self, raw: bytes) -> tuple[list[Item], bool]:
        page = self._decode(raw)
        return [Item(s.seq, bytes(s.event)) for s in page.events], page.more

    def _decode(self, raw: bytes) -> StoredPage:
        try:
            page = decode_page(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise FollowError(f"cannot read stored events: {e}") from e
        self.last_seq = max(self.last_seq, page.last_seq)
        return page

    async def _page(self, req: StoreReadRequest, attempts: int) -> StoredPage:
        return self._decode(await self._call(msgspec.json.encode(req), attempts))

    async def _call(self, payload: bytes, attempts: int) -> bytes:
        """One store read, retried with backoff while the store answers 503/504."""
        delay = 0.1
        for attempt in range(attempts):
            try:
                return await self.bus.call_raw(STORE_READ, payload)
            except ServiceCallError as e:
                if e.code not in (503, 504) or attempt == attempts - 1:
                    raise FollowError(f"cannot read stored events: {e}") from e
            except (GpurouteError, msgspec.DecodeError, msgspec.ValidationError) as e:
                raise FollowError(f"cannot read stored events: {e}") from e
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


class _Head(msgspec.Struct):
    id: str


_head_decoder = msgspec.json.Decoder(_Head)


def _valid_live(subject: str, data: bytes, stats: FollowStats) -> Item | None:
    """The event of a ``stored.*`` message, or None (logged and skipped)
    when it is not a stored event of the type its subject names: anyone can
    publish on a subject, and one bad message must not stop a follower."""
    try:
        if len(data) > MAX_STORED_BYTES:
            raise ValueError(f"{len(data)} bytes, over the limit of {MAX_STORED_BYTES}")
        stored = decode_stored(data)
        event = decode_event(stored.event)
        if STORED_PREFIX + event.type != subject:
            raise ValueError(f"event type {event.type!r} on {subject!r}")
        if not 0 < stored.seq <= limits.MAX_SEQ:
            raise ValueError(f"position {stored.seq} out of range")
        return Item(stored.seq, bytes(stored.event), event)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        global malformed_skipped
        malformed_skipped += 1
        stats.skipped += 1
        log.warning(
            "malformed stored event skipped",
            extra={"fields": {"subject": subject, "reason": " ".join(str(e).split())}},
        )
        return None


@functools.cache
def _typed_page_decoder() -> msgspec.json.Decoder[Any]:
    """A store page decoded straight into typed events (built on first use, once
    every event type is registered, like :func:`schemas.decode_event`'s)."""
    members = tuple(et.envelope for et in event_types().values())
    stored = msgspec.defstruct("TypedStored", [("seq", int), ("event", Union[members])])  # noqa: UP007
    page = msgspec.defstruct(
        "TypedPage",
        [("events", list[stored]), ("last_seq", int, 0), ("more", bool, False)],  # type: ignore[valid-type]
    )
    return msgspec.json.Decoder(page)
