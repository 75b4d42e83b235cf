"""The follower: a service's state rebuilt from a snapshot and the store, then live.

Every service that folds events into its own state does it through one
:class:`Follower` (the advisor, the adapters):

1. load the newest snapshot of the projection's code version (``snapshots.py``)
   and check that the store still holds the event it was folded up to (the
   same log); anything wrong with it means position 0, never a crash;
2. ask the store for the newest position the patterns match (the *head*) and
   fold every matching event up to it through :func:`follow_events`: each
   event is decoded once, history pages in one pass;
3. then :attr:`loaded` is set (and :attr:`ready`, unless the service holds it
   back to do something first, as the advisor seeds its registry), a snapshot
   is saved, and live events are folded as they are stored.

While not ready a service answers its requests with a prompt 503 "still
loading" (:meth:`Follower.require_ready`): the service itself starts at once
and waits for no other service. Commands that must read their own writes
publish through :meth:`Follower.publish_and_wait`, which returns once the
events came back folded. A store that does not answer (not started yet,
restarting) is retried here with backoff, the one place for it; the position
is kept, so a retry resumes where the last one stopped. A stored event that
does not decode or fold is skipped and counted per follower
(:attr:`Follower.skipped`); the log says so for the first few and then once
per ``SKIP_LOG_EVERY``, so a log full of them cannot flood the service's log.

A service that alone writes some of the types it follows, and folds each of
its events before publishing it (the budget), says so with :meth:`Follower.own`
once it has caught up with what an earlier instance wrote: from then on those
types are not taken back from the store live at all (the store broadcast, the
server delivered and the service read a copy of every event it wrote, only to
move its position). The position then moves past them when the store is quiet
(``advance`` in ``follow.py``: no other followed event for ``quiet_s``, the
store's newest event becomes the position) or when a followed event after them
arrives. So a snapshot may hold changes of its own past its position; the
projection must skip an event it already folded when it reads it again after a
restart (the budget's fold skips a change number it has).

Snapshots are saved every ``snapshot_every`` events or ``snapshot_every_s``
seconds once loaded (only by time while loading), and on :meth:`close`.

**Latest wins.** A projection that is also :class:`LatestWins` names event
types of which only the newest one it takes counts (the advisor's
``telemetry.sampled``: 9 in 10 events of a busy log). Step 2 then reads those
types newest first, one page, and folds only the newest event the projection
takes, merged by position with every event of the other patterns. Why that is
the same state, byte for byte, as a fold of every event: such an event sets
one part of the state from itself alone, no other event reads or writes that
part, and whether the projection takes it does not depend on the state; so
each taken event is overwritten by the next one, and the others change
nothing. When the newest page holds none the projection takes (another
node's samples only), the whole history is folded as usual. Events of those
types older than the one folded are not read, so they are not counted as
skipped either.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from logging import Logger
from typing import Generic, Protocol, TypeVar, cast, runtime_checkable

import msgspec

from schemas import Event, decode_event, limits
from schemas.subjects import STORE_READ
from schemas.system import StoreReadRequest, decode_page
from services.runtime.bus import Bus
from services.runtime.endpoints import EndpointError
from services.runtime.errors import GpurouteError
from services.runtime.follow import (
    QUIET_S,
    FollowError,
    FollowStats,
    Item,
    Stop,
    follow_events,
    subject_matches,
)
from services.runtime.profiling import HotPaths
from services.runtime.projection import Projection, Projector, gc_paused, state_hash
from services.runtime.snapshots import Snapshots

S = TypeVar("S")

RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
READY_GRACE_S = 0.5
"""A request that arrives while loading waits this long before its 503, so a
client that calls right after a start does not see one for a few milliseconds
of loading."""
SNAPSHOT_EVERY = 10_000
SNAPSHOT_EVERY_S = 60.0
SKIPS_KEPT = 16
SKIP_LOG_FIRST = 10
SKIP_LOG_EVERY = 1000
LATEST_PAGE = 1000
"""Events of a latest-wins type read (newest first) to find the newest one taken."""


class _EventId(msgspec.Struct):
    id: str


_id_decoder = msgspec.json.Decoder(_EventId)


@runtime_checkable
class LatestWins(Protocol):
    """A projection that declares "latest wins" event types (see the module's
    docstring for what it promises about them)."""

    latest_types: tuple[str, ...]
    """Exact event types; each must be one of the follower's patterns."""

    def takes_latest(self, event: Event) -> bool:
        """Whether ``apply`` would set its part of the state from ``event`` (an
        event of a latest-wins type); it must not depend on the state."""
        ...


class Follower(Generic[S]):
    """One projection's state, rebuilt and kept up to date; run :meth:`run` as a
    supervised loop of the service and :meth:`close` it on stop."""

    def __init__(
        self,
        bus: Bus,
        projection: Projection[S],
        patterns: Sequence[str],
        *,
        log: Logger,
        snapshots: Snapshots | None = None,
        hold_ready: bool = False,
        on_apply: Callable[[int, Event], None] | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
        snapshot_every_s: float = SNAPSHOT_EVERY_S,
        hot: HotPaths | None = None,
    ) -> None:
        """``hot``: where the rebuild's wall time is recorded (``follower.rebuild``)."""
        self.bus = bus
        self.hot = hot
        self.projection = projection
        self.projector = Projector(projection)
        self.patterns = list(patterns)
        self.log = log
        self.snapshots = snapshots
        self.hold_ready = hold_ready
        self.on_apply = on_apply
        self.snapshot_every = snapshot_every
        self.snapshot_every_s = snapshot_every_s
        self.loaded = asyncio.Event()
        """Every matching event stored when loading began is folded."""
        self._moved = asyncio.Event()  # set when the position may have moved
        self.ready = asyncio.Event()
        """The service answers (set with :attr:`loaded` unless ``hold_ready``)."""
        self.stats = FollowStats()
        self.head: int | None = None
        """Newest matching position when loading began (None: not known yet)."""
        self.restored_from: int | None = None
        """Position of the snapshot loaded at start (None: rebuilt from 0)."""
        self.recent_skips: deque[str] = deque(maxlen=SKIPS_KEPT)
        self._fold_skipped = 0
        self._applied: dict[str, asyncio.Future[bool]] = {}
        self.live_patterns = list(patterns)
        """The patterns followed live (all of them until :meth:`own`)."""
        self.quiet_s = QUIET_S
        self._stop = Stop()
        self._owned: list[str] = []
        self._no_saves = False
        self._last_id: str | None = None
        self._snapshot_done = snapshots is None
        self._saved_position = 0
        self._saved_at = time.monotonic()
        self._started_at = time.monotonic()
        self._delay = RETRY_MIN_S
        self._saving = asyncio.Lock()
        self._partial = False
        """Folding history out of order (latest wins): no snapshot may be saved."""
        self.latest_page = LATEST_PAGE
        self._initial = state_hash(projection.to_builtins(projection.initial()))

    # -- what services read --------------------------------------------------

    @property
    def state(self) -> S:
        return self.projector.state

    @property
    def position(self) -> int:
        return self.projector.position

    @property
    def skipped(self) -> int:
        """Messages and events this follower skipped: malformed ``stored.*``
        messages plus stored events that did not decode or fold."""
        return self.stats.skipped + self._fold_skipped

    def progress(self) -> str:
        head = "?" if self.head is None else str(self.head)
        return f"folded up to position {self.position} of {head}"

    async def require_ready(self, service: str, grace: float = READY_GRACE_S) -> None:
        """Return once ready; after ``grace`` seconds raise a 503 saying so."""
        if not await self.wait_ready(grace):
            raise EndpointError(
                503,
                f"{service} is still loading its state from the event store "
                f"({self.progress()}); retry shortly",
            )

    async def wait_ready(self, timeout: float = READY_GRACE_S) -> bool:
        if self.ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    async def wait_position(self, seq: int, timeout: float) -> bool:
        """True once every matching event up to store position ``seq`` is folded
        (or skipped), False after ``timeout`` seconds: what a caller that saw an
        event stored (``stored.*``) awaits before reading :attr:`state`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < seq:
            self._moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), max(0.0, deadline - loop.time()))
            if loop.time() >= deadline:
                return self.position >= seq
        return True

    async def publish_and_wait(self, events: list[Event], timeout: float) -> bool:
        """Publish ``events``; True once every one came back folded, False after
        ``timeout`` seconds (published, not folded yet) or if one did not fold.
        ValueError for an event of a type this follower :meth:`own`s (it never
        comes back)."""
        owned = [e.type for e in events for p in self._owned if subject_matches(p, e.type)]
        if owned:
            raise ValueError(f"publish_and_wait of {owned[0]}: its events are owned (own())")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in events]
        for event, future in zip(events, futures, strict=True):
            self._applied[event.id] = future
        try:
            await self.bus.publish_many(events)
            return all(await asyncio.wait_for(asyncio.gather(*futures), timeout))
        except TimeoutError:
            return False
        finally:
            for event in events:
                self._applied.pop(event.id, None)

    def own(self, patterns: Sequence[str]) -> None:
        """From now on only this service writes events matching ``patterns`` (some
        of the follower's patterns), and it folds each into :attr:`state` before
        publishing it: they are no longer followed live (see the module's
        docstring). Call it once loaded and caught up with what an earlier
        instance wrote (before, it raises: the rest of the history would never
        be folded). :meth:`wait_position` at such an event then returns after
        a quiet spell or a later followed event; :meth:`publish_and_wait`
        refuses them."""
        if not self.loaded.is_set():
            raise RuntimeError("own() before the state is loaded: its history would be lost")
        unknown = [p for p in patterns if p not in self.patterns]
        live = [p for p in self.patterns if p not in patterns]
        if unknown or not live:
            raise ValueError(f"own({list(patterns)}): {unknown or 'every pattern'} "
                             f"of {self.patterns}")  # fmt: skip
        self.live_patterns = live
        self._owned = list(patterns)
        self._stop.set()  # the follow in progress returns; the next one follows these

    def stop_saving(self, reason: str) -> None:
        """Save no more snapshots (:meth:`save` and :meth:`close` do nothing):
        the state holds a change the log may never get (a service that folded
        its own event before publishing it, and the publish failed). The next
        start rebuilds from the last snapshot saved before and the store."""
        if not self._no_saves:
            self.log.warning("snapshots stopped", extra={"fields": {"reason": reason}})
        self._no_saves = True

    # -- the loop ------------------------------------------------------------

    async def run(self) -> None:
        """Load, then follow forever; store errors are retried with backoff."""
        while True:
            try:
                await self._follow()
            except (GpurouteError, msgspec.DecodeError, msgspec.ValidationError) as e:
                self.log.warning(
                    "cannot follow the event store, retrying",
                    extra={"fields": {"error": str(e), "retry_s": self._delay,
                                      "position": self.position}},
                )  # fmt: skip
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, RETRY_MAX_S)

    async def _follow(self) -> None:
        if not self._snapshot_done:
            await self._restore()
        if not self.loaded.is_set():
            if not await self._load_latest():
                self.head = await self._head()
            await self._check_loaded()
            self._moved.set()
        self._stop = stop = Stop()
        items = follow_events(self.bus, self.live_patterns, self.position, stats=self.stats,
                              quiet_s=self.quiet_s, advance=bool(self._owned),
                              stop=stop)  # fmt: skip
        async for item in items:
            self._delay = RETRY_MIN_S
            self._apply(item)
            self._moved.set()
            if not self.loaded.is_set():
                await self._check_loaded()
            elif self._due():
                await self.save()

    def _apply(self, item: Item) -> None:
        seq, event = item.seq, item.event
        if item.moved is not None:  # past events of its own (folded) and unfollowed ones
            self.projector.position = max(self.projector.position, seq)
            self._last_id = item.moved
            waiting = self._applied.pop(item.moved, None)  # publish_and_wait of it
            if waiting is not None and not waiting.done():
                waiting.set_result(True)
            return
        if event is None:
            self._skip(seq, item.error or "not decoded")
            self.projector.position = max(self.projector.position, seq)
            return
        future = self._applied.pop(event.id, None)
        try:
            self.projector.apply(seq, event)
        except (TypeError, ValueError, msgspec.ValidationError) as e:  # a fold bug: go on
            self._skip(seq, f"fold failed: {type(e).__name__}: {e}")
            self.projector.position = max(self.projector.position, seq)
            if future is not None and not future.done():
                future.set_result(False)
            return
        self._last_id = event.id
        if self.on_apply is not None:
            self.on_apply(seq, event)
        if future is not None and not future.done():
            future.set_result(True)

    def _skip(self, seq: int, reason: str) -> None:
        self._fold_skipped += 1
        text = f"position {seq}: {' '.join(reason.split())}"[: limits.MAX_TEXT]
        self.recent_skips.append(text)
        n = self._fold_skipped
        if n <= SKIP_LOG_FIRST or n % SKIP_LOG_EVERY == 0:
            self.log.warning(
                "stored event skipped",
                extra={"fields": {"projection": self.projection.name, "reason": text,
                                  "skipped": n}},
            )  # fmt: skip

    async def _check_loaded(self) -> None:
        if self.head is None or self.position < self.head:
            return
        self.loaded.set()
        if not self.hold_ready:
            self.ready.set()
        seconds = time.monotonic() - self._started_at
        if self.hot is not None:
            self.hot.record("follower.rebuild", seconds)
        self.log.info(
            "state loaded",
            extra={"fields": {"projection": self.projection.name, "position": self.position,
                              "from_snapshot": self.restored_from, "skipped": self.skipped,
                              "seconds": round(seconds, 3)}},
        )  # fmt: skip
        if self.snapshots is not None and self.position > self._saved_position:
            await self.save()  # the next start reads only what follows

    def _due(self) -> bool:
        if self.snapshots is None or self.position <= self._saved_position:
            return False
        since = time.monotonic() - self._saved_at
        return since >= self.snapshot_every_s or (
            self.loaded.is_set() and self.position - self._saved_position >= self.snapshot_every
        )

    # -- latest wins ---------------------------------------------------------

    async def _load_latest(self) -> bool:
        """Fold the history with only the newest taken event of each latest-wins
        type; False (nothing folded) when the projection declares none or the
        newest page of one holds no event it takes."""
        projection = self.projection
        if not isinstance(projection, LatestWins) or ">" in self.patterns:
            return False
        types = [t for t in projection.latest_types if t in self.patterns]
        if not types:
            return False
        after = self.position
        rest = [p for p in self.patterns if p not in types]
        rest_head, head_id = await self._newest(rest) if rest else (0, None)
        head = rest_head
        taken: list[Item] = []
        for t in types:
            found = await self._newest_taken(projection, t, after)
            if found is None:
                return False
            newest, newest_id, item = found
            if newest > head:
                head, head_id = newest, newest_id
            if item is not None:
                taken.append(item)
        self.head = max(head, after)
        if head <= after:
            return True
        self._partial = True
        try:
            await self._fold_merged(rest, after, rest_head, sorted(taken, key=lambda i: i.seq))
        finally:
            self._partial = False
        self.projector.position, self._last_id = head, head_id
        return True

    async def _newest_taken(
        self, projection: LatestWins, type_: str, after: int
    ) -> tuple[int, str | None, Item | None] | None:
        """(newest position of ``type_`` after ``after``, its id, the newest event
        the projection takes: None if there is none); None when the newest page
        does not tell (none taken in it, and older ones exist)."""
        req = StoreReadRequest(after=after, limit=self.latest_page, patterns=[type_], last=True)
        try:
            raw = await self.bus.call_raw(STORE_READ, msgspec.json.encode(req))
        except GpurouteError as e:
            raise FollowError(f"cannot read stored events: {e}") from e
        page = decode_page(raw)
        if not page.events:
            return 0, None, None
        newest = page.events[-1]
        newest_id = _event_id(bytes(newest.event))
        for stored in reversed(page.events):
            try:
                event = decode_event(bytes(stored.event))
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self._skip(stored.seq, " ".join(str(e).split()))
                continue
            if projection.takes_latest(event):
                return newest.seq, newest_id, Item(stored.seq, None, event)
        return None if page.more else (newest.seq, newest_id, None)

    async def _newest(self, patterns: list[str]) -> tuple[int, str | None]:
        """(the newest position ``patterns`` match, 0: none; its event id)."""
        rows = await self._read(StoreReadRequest(limit=1, last=True, patterns=patterns))
        return (rows[-1][0], _event_id(rows[-1][1])) if rows else (0, None)

    async def _fold_merged(
        self, rest: list[str], after: int, rest_head: int, taken: list[Item]
    ) -> None:
        """Fold the events of ``rest`` in (after, rest_head] and ``taken``, by position."""
        if rest_head > after:
            # a generator, typed as an iterator: closed here, it unsubscribes at once
            events = follow_events(self.bus, rest, after, stats=self.stats)
            events = cast(AsyncGenerator[Item], events)
            async with contextlib.aclosing(events):
                async for item in events:
                    while taken and taken[0].seq < item.seq:
                        self._apply(taken.pop(0))
                    self._apply(item)
                    if item.seq >= rest_head:
                        break
        for item in taken:
            self._apply(item)

    # -- the store -----------------------------------------------------------

    async def _read(self, req: StoreReadRequest) -> list[tuple[int, bytes]]:
        try:
            raw = await self.bus.call_raw(STORE_READ, msgspec.json.encode(req))
        except GpurouteError as e:
            raise FollowError(f"cannot read stored events: {e}") from e
        return [(s.seq, bytes(s.event)) for s in decode_page(raw).events]

    async def _head(self) -> int:
        """The newest stored position the patterns match (0: none)."""
        patterns = None if ">" in self.patterns else self.patterns
        rows = await self._read(StoreReadRequest(limit=1, last=True, patterns=patterns))
        return rows[-1][0] if rows else 0

    # -- snapshots -----------------------------------------------------------

    async def _restore(self) -> None:
        """Load the snapshot and check it against the store (once per follower)."""
        assert self.snapshots is not None
        name, version = self.projection.name, self.projection.version
        found = await asyncio.to_thread(self.snapshots.load, name, version, self._initial)
        if found is not None and found.position > 0:
            rows = await self._read(StoreReadRequest(after=found.position - 1, limit=1))
            at = rows[0] if rows and rows[0][0] == found.position else None
            held = at is not None and _event_id(at[1]) == found.event_id
            if not held:
                reason = f"the store holds no event {found.event_id} at {found.position}"
                self.snapshots.discard(name, version, reason)
                found = None
        if found is not None:
            try:
                with gc_paused():
                    state = self.projection.from_builtins(found.state)
            except (msgspec.ValidationError, ValueError, TypeError) as e:
                self.snapshots.discard(name, version, f"state does not load: {e}")
            else:
                self.projector.reset(state, found.position)
                self._last_id = found.event_id
                self._saved_position = self.restored_from = found.position
        self._snapshot_done = True

    async def save(self) -> None:
        """Save a snapshot of the state now (errors are logged, never raised)."""
        if self.snapshots is None or self._no_saves:
            return
        async with self._saving:  # one at a time: a stop may come during a save
            await self._save(self.snapshots)

    async def _save(self, snapshots: Snapshots) -> None:
        position, event_id = self.position, self._last_id
        with gc_paused():
            data = self.projector.snapshot()
        name, version = self.projection.name, self.projection.version
        self._saved_at = time.monotonic()
        try:
            size = await asyncio.to_thread(
                snapshots.save, name, version, self._initial, position, event_id, data
            )
        except (OSError, TypeError, ValueError) as e:
            self.log.warning("snapshot not saved", extra={"fields": {"error": str(e)}})
            return
        self._saved_position = position
        self.log.debug(
            "snapshot saved",
            extra={"fields": {"projection": name, "position": position, "bytes": size}},
        )

    async def close(self) -> None:
        """On stop: fail waiting commands, save what was folded since the last save."""
        for future in self._applied.values():
            future.cancel()
        self._applied.clear()
        if self._snapshot_done and not self._partial and self.position > self._saved_position:
            await self.save()


def _event_id(raw: bytes) -> str | None:
    try:
        return limits.decode(_id_decoder, raw, max_depth=None, what="event").id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
