"""The service lifecycle every gpuroute service shares.

A :class:`Service` has an explicit :meth:`start` and :meth:`stop`. Its
background tasks are created only through :meth:`spawn` (one-shot) and
:meth:`supervise` (a loop that is restarted when it dies), and are cancelled
and awaited on stop. On start it registers a ``nats.micro`` service
(discovery and stats on ``$SRV.*`` come with it) and publishes a heartbeat on
``svc.heartbeat`` every ``heartbeat_s`` seconds, and at once when a task dies.

A task that dies unexpectedly is never silent: it is logged once with its
traceback (later deaths of the same task one line each), and named in
``Heartbeat.faults`` while it is dead or waiting to restart. What happens next
is the task's policy:

- :meth:`supervise` with ``restart=True``: the loop is started again after a
  backoff (0.1 s doubling to 30 s); the fault clears once it has run for
  ``HEALTHY_AFTER_S``. For loops whose state lives in the service (a
  position, a buffer), so a fresh run carries on where the dead one stopped.
- :meth:`supervise` with ``restart=False``, and every :meth:`spawn`: the
  service is marked failed (:attr:`Service.failed`); whoever runs it
  (``runner.py``) stops it and starts a fresh instance, which rebuilds its
  state from the store. For tasks that cannot be resumed alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

import msgspec
import nats.errors
from nats import micro
from nats.micro.service import Service as MicroService

from schemas.subjects import HEARTBEAT, PING
from schemas.system import Heartbeat
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.logs import get_logger

VERSION = importlib.metadata.version("gpuroute")
"""The installed package's version: heartbeats, ``$SRV`` and ``gpuroute --version``."""
RESTART_MIN_S = 0.1
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 10.0
"""A restarted loop that has run this long is well again: its fault clears and
its backoff starts over."""
MAX_FAULT_TEXT = 300

LoopFactory = Callable[[], Coroutine[Any, Any, Any]]


def describe(error: BaseException) -> str:
    """``Type: message`` on one bounded line, for a fault sentence."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= MAX_FAULT_TEXT else text[: MAX_FAULT_TEXT - 3] + "..."


class _Loop:
    """Bookkeeping of one :meth:`Service.supervise` loop."""

    __slots__ = ("deaths", "delay", "fault", "generation")

    def __init__(self) -> None:
        self.deaths = 0
        self.delay = RESTART_MIN_S
        self.fault: str | None = None
        self.generation = 0  # bumped per run, so a stale "healthy" timer clears nothing


class Service:
    name: ClassVar[str] = "service"
    description: ClassVar[str] = ""

    def __init__(self, bus: Bus, config: Config) -> None:
        self.bus = bus
        self.config = config
        self.clock = bus.clock
        self.log = get_logger(self.name)
        self.instance = bus.ids.new()
        self.micro: MicroService | None = None
        self.failed = asyncio.Event()
        """Set when a task died that only a fresh instance can replace."""
        self.failure: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False
        """Set when :meth:`stop` begins: a failure after it is the stop, not a fault."""
        self._loops: dict[str, _Loop] = {}
        self._dead: dict[str, str] = {}  # one-shot task name -> fault sentence
        self._beat_now = asyncio.Event()
        self._started_at = 0.0

    async def start(self) -> None:
        self._started_at = self.clock.monotonic()
        self.micro = await micro.add_service(
            self.bus.nc,
            name=f"gpuroute-{self.name}",
            version=VERSION,
            description=self.description or self.name,
        )
        await self.setup()

        async def on_ping(_: object) -> None:
            await self._beat()

        self._ping = await self.bus.nc.subscribe(PING, cb=on_ping)
        self.supervise(self._heartbeats, "heartbeat")
        await self.bus.flush()  # endpoints and subscriptions are live when start returns
        self.log.info("started", extra={"fields": {"service": self.name}})

    async def setup(self) -> None:
        """Register endpoints and subscriptions, spawn tasks. Override."""

    async def teardown(self) -> None:
        """Release what :meth:`setup` acquired, after tasks stopped. Override."""

    def restart_config(self) -> Config:
        """The config a replacement instance starts with (see ``runner.py``).
        Override to carry over what this instance chose (e.g. a port it got)."""
        return self.config

    # -- tasks -------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` once. If it dies, the service is marked failed."""
        task = asyncio.create_task(coro, name=f"{self.name}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def supervise(self, factory: LoopFactory, name: str, *, restart: bool = True) -> None:
        """Run ``factory()`` as a background loop named ``name``.

        ``restart=True``: when it raises, a fresh ``factory()`` runs after a
        backoff; ``restart=False``: the service is marked failed. A loop that
        returns has finished and is not restarted."""
        state = self._loops.setdefault(name, _Loop())
        self.spawn(self._keep_running(factory, name, state, restart), name)

    async def _keep_running(
        self, factory: LoopFactory, name: str, state: _Loop, restart: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            state.generation += 1
            healthy = None
            if state.fault is not None:
                healthy = loop.call_later(HEALTHY_AFTER_S, self._healthy, state, state.generation)
            try:
                await factory()
                return
            except Exception as e:
                if not restart:
                    self._died(name, e, "the service restarts")
                    return
                what = f"restarted {state.deaths} times, next in {state.delay:.3g} s"
                self._died(name, e, what, state)
            finally:
                if healthy is not None:
                    healthy.cancel()
            await asyncio.sleep(state.delay)
            state.delay = min(state.delay * 2, RESTART_MAX_S)

    def _healthy(self, state: _Loop, generation: int) -> None:
        if state.generation == generation:
            state.fault = None
            state.delay = RESTART_MIN_S
            self._beat_now.set()

    def _died(
        self, name: str, error: BaseException, next_step: str, state: _Loop | None = None
    ) -> None:
        """Log a death (traceback the first time only), record its fault
        sentence, fail the service when it is not restarted, beat at once."""
        sentence = f"task {name} died: {describe(error)}; {next_step}"
        first = state is None or state.deaths == 0
        fields = {"service": self.name, "task": name, "fault": sentence}
        if first:
            self.log.error("background task died", exc_info=error, extra={"fields": fields})
        else:
            self.log.warning("background task died again", extra={"fields": fields})
        if state is None:
            self._dead[name] = sentence
            if self.failure is None:
                self.failure = sentence
            self.failed.set()
        else:
            state.deaths += 1
            state.fault = sentence
        self._beat_now.set()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._died(task.get_name().removeprefix(f"{self.name}."), error, "the service restarts")

    def faults(self) -> list[str]:
        """One sentence per dead or restarting task and per permission the
        server refused this service's connection (empty when all is well)."""
        loops = [s.fault for s in self._loops.values() if s.fault is not None]
        refused = [f"NATS refused: {r}" for r in self.bus.refused]
        return [*self._dead.values(), *loops, *refused]

    # -- stop, heartbeats --------------------------------------------------------

    async def stop(self) -> None:
        """Cancel every background task, wait until each has ended, tear down.

        A cancellation that races a reply can be swallowed (``asyncio.wait_for``
        on Python 3.11, nats-py's flush), leaving a task running: cancel again
        until every task is gone rather than awaiting each once.
        """
        self.stopping = True
        while self._tasks:
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        with contextlib.suppress(nats.errors.Error, AttributeError):
            await self._ping.unsubscribe()
        try:
            await self.teardown()
        except Exception:  # e.g. on a connection that is gone: still stop micro
            self.log.exception("teardown failed", extra={"fields": {"service": self.name}})
        if self.micro is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.micro.stop()
        self.log.info("stopped", extra={"fields": {"service": self.name}})

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            service=self.name,
            instance=self.instance,
            version=VERSION,
            pid=os.getpid(),
            uptime_s=round(self.clock.monotonic() - self._started_at, 3),
            ts=self.clock.now(),
            faults=self.faults(),
        )

    async def _beat(self) -> None:
        if self.bus.connected:
            with contextlib.suppress(nats.errors.Error):
                await self.bus.nc.publish(HEARTBEAT, msgspec.json.encode(self.heartbeat()))

    async def _heartbeats(self) -> None:
        while True:
            self._beat_now.clear()
            await self._beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.config.heartbeat_s)
