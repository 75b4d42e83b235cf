"""Helpers shared by the tests (fixtures live in conftest.py).

Tests wait on what the system announces, not on a timer: :class:`EventWatch`
(the ``stored`` fixture) for what the store committed, a service's own
follower (``publish_and_wait``, ``wait_ready``) for what it folded.
:func:`poll` is left for conditions nothing announces: a port opening, a file
another process writes, a counter inside a client library."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
from nats.aio.msg import Msg

from schemas import Event, decode_event
from schemas.advisor import JobAdvised
from schemas.jobs import JobSpec, JobStarted, JobSubmitted, JobSucceeded
from schemas.subjects import STORED_PREFIX
from schemas.system import decode_stored
from services.runtime.bus import Bus
from services.runtime.follow import subject_matches

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a subprocess that needs a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether the gateway at ``url`` answers /health with ok: true."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as r:
            return bool(json.load(r)["ok"])
    except (OSError, ValueError):
        return False


async def poll(predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until truthy; returns its value.

    Only for a condition that nothing announces (a port opening, a file another
    process writes, a client library's inner state): an event-caused condition
    is awaited on :class:`EventWatch` or the service's follower instead."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


Where = Callable[[Event], Any] | None
"""A filter on events: truthy keeps one."""


class Folds(Protocol):
    """A service's follower (``services.runtime.follower.Follower``)."""

    @property
    def position(self) -> int: ...

    async def wait_position(self, seq: int, timeout: float) -> bool: ...


class EventWatch:
    """Every event seen on a subscription from the moment it began: on
    ``stored.>`` (:func:`watch_stored`, the ``stored`` fixture) what the store
    committed, as it announces it after the SQLite commit (an event seen there
    is a readable row); on an event subject (:func:`watch_events`) what a
    service published, stored or not. Waits return as soon as the awaited event
    arrives and fail with what was seen after ``timeout`` seconds."""

    def __init__(self, *, stored: bool = True) -> None:
        self.stored = stored
        self.events: list[tuple[int, Event]] = []
        """(store position, or 0 for an event not from ``stored.*``; event) in arrival order."""
        self.malformed = 0
        """Messages that were no (stored) event: a test's garbage."""
        self._arrived = asyncio.Event()

    async def on_message(self, msg: Msg) -> None:
        try:
            if self.stored:
                item = decode_stored(msg.data)
                self.events.append((item.seq, decode_event(bytes(item.event))))
            else:
                self.events.append((0, decode_event(msg.data)))
        except (msgspec.MsgspecError, ValueError):
            self.malformed += 1
        self._arrived.set()

    def matching(self, pattern: str = ">", where: Where = None) -> list[Event]:
        """The events seen so far whose type matches the NATS ``pattern``."""
        return [
            e
            for _, e in self.events
            if subject_matches(pattern, e.type) and (where is None or where(e))
        ]

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Wait until ``check()`` is truthy, re-checking on each stored event; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := check()):
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                seen = [f"{s}:{e.type}" for s, e in self.events[-10:]]
                raise AssertionError(
                    f"no {what} within {timeout}s; the last seen: {seen}"
                ) from None
        return value

    async def first(self, pattern: str = ">", where: Where = None, timeout: float = 10.0) -> Event:
        """The first stored event of type ``pattern`` (and ``where``) since the watch began."""
        found: list[Event] = await self.count(1, pattern, where, timeout)
        return found[0]

    async def count(
        self, n: int, pattern: str = ">", where: Where = None, timeout: float = 10.0
    ) -> list[Event]:
        """Wait until at least ``n`` matching events are stored; returns them all."""

        def enough() -> list[Event] | None:
            found = self.matching(pattern, where)
            return found if len(found) >= n else None

        return await self.until(enough, f"{n} x {pattern}", timeout)  # type: ignore[no-any-return]

    async def folded(
        self, follower: Folds, pattern: str = ">", where: Where = None, timeout: float = 10.0
    ) -> Event:
        """The first matching stored event, once ``follower`` has folded it: a
        service's state is read after this, never polled."""

        def found() -> tuple[int, Event] | None:
            return next(
                ((s, e) for s, e in self.events
                 if subject_matches(pattern, e.type) and (where is None or where(e))),
                None,
            )  # fmt: skip

        seq, event = await self.until(found, pattern, timeout)
        if not await follower.wait_position(seq, timeout):
            raise AssertionError(f"{pattern} at {seq} not folded within {timeout}s "
                                 f"(folded up to {follower.position})")  # fmt: skip
        return event  # type: ignore[no-any-return]

    async def position(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until the store announced position ``seq`` (or a later one)."""
        await self.until(lambda: any(s >= seq for s, _ in self.events), f"position {seq}", timeout)


@contextlib.asynccontextmanager
async def watch_events(bus: Bus, subject: str) -> AsyncIterator[EventWatch]:
    """The events published on ``subject`` (a NATS pattern), seen on ``bus``'s
    connection; subscribed and flushed before it is handed out."""
    async with _watch(bus, subject, EventWatch(stored=False)) as events:
        yield events


@contextlib.asynccontextmanager
async def watch_stored(bus: Bus) -> AsyncIterator[EventWatch]:
    """Every event the store commits (``stored.>``), seen on ``bus``'s
    connection; subscribed and flushed before it is handed out, so nothing
    stored afterwards is missed."""
    async with _watch(bus, STORED_PREFIX + ">", EventWatch()) as events:
        yield events


@contextlib.asynccontextmanager
async def _watch(bus: Bus, subject: str, events: EventWatch) -> AsyncIterator[EventWatch]:
    sub = await bus.nc.subscribe(subject, cb=events.on_message)
    await bus.nc.flush()
    try:
        yield events
    finally:
        await sub.unsubscribe()


RESTART_PUBLISH_TIMEOUT_S = 0.5
"""Ack wait of a bus in a test that restarts nats-server: an ack lost in the
restart is re-sent after this, not after the 5 s default."""


@contextlib.asynccontextmanager
async def restart_bus(url: str, source: str = "test") -> AsyncIterator[Bus]:
    """A Bus whose lost acks are re-sent after ``RESTART_PUBLISH_TIMEOUT_S``."""
    bus = await Bus.connect(url, source=source, publish_timeout=RESTART_PUBLISH_TIMEOUT_S)
    await bus.ensure_streams()
    try:
        yield bus
    finally:
        await bus.close()


def gpuroute(*args: str, **kwargs) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """Start the installed ``gpuroute`` command as a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(BIN / "gpuroute"), *args], env=env, **kwargs)


def lifecycle(bus: Bus, job_id: str) -> list[Event]:
    """submitted -> advised -> started -> succeeded, causally linked."""
    submitted = bus.event(JobSubmitted(spec=JobSpec(width=1024, height=1024)), key=job_id)
    advised = bus.event(
        JobAdvised(target="local", rule="local_gpu", reason="fits"), key=job_id, causation=submitted
    )
    started = bus.event(JobStarted(target="local"), key=job_id, causation=advised)
    done = bus.event(JobSucceeded(artifacts=["out.png"]), key=job_id, causation=started)
    return [submitted, advised, started, done]
