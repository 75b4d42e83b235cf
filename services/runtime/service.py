"""The service lifecycle every gpuroute service shares.

A :class:`Service` has an explicit :meth:`start` and :meth:`stop`. Its
background tasks are created only through :meth:`spawn` and are cancelled and
awaited on stop. On start it registers a ``nats.micro`` service (discovery and
stats on ``$SRV.*`` come with it) and publishes a heartbeat on
``svc.heartbeat`` every ``heartbeat_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
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

VERSION = "0.1.0"


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
        self._tasks: set[asyncio.Task[Any]] = set()
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
        self.spawn(self._heartbeats(), "heartbeat")
        await self.bus.nc.flush()  # endpoints and subscriptions are live when start returns
        self.log.info("started", extra={"fields": {"service": self.name}})

    async def setup(self) -> None:
        """Register endpoints and subscriptions, spawn tasks. Override."""

    async def teardown(self) -> None:
        """Release what :meth:`setup` acquired, after tasks stopped. Override."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.name}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error(
                "background task died",
                exc_info=task.exception(),
                extra={"fields": {"task": task.get_name()}},
            )

    async def stop(self) -> None:
        """Cancel every background task, wait until each has ended, tear down.

        A cancellation that races a reply can be swallowed (``asyncio.wait_for``
        on Python 3.11, nats-py's flush), leaving a task running: cancel again
        until every task is gone rather than awaiting each once.
        """
        while self._tasks:
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        with contextlib.suppress(nats.errors.Error, AttributeError):
            await self._ping.unsubscribe()
        await self.teardown()
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
        )

    async def _beat(self) -> None:
        if self.bus.connected:
            with contextlib.suppress(nats.errors.Error):
                await self.bus.nc.publish(HEARTBEAT, msgspec.json.encode(self.heartbeat()))

    async def _heartbeats(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(self.config.heartbeat_s)
