"""Run services in one process: ``gpuroute up`` (all) and ``gpuroute serve NAME``.

Starts the embedded nats-server when no NATS URL is configured, gives each
service its own connection (as it would have deployed alone), starts them in
order, and on SIGINT/SIGTERM stops them in reverse order, drains their
connections and stops the server. While the embedded server runs, its URL is in
``<data-dir>/nats.url`` (mode 0600, removed on stop) for ``tail`` and ``serve``.

Each service is supervised (:class:`Supervisor`): when its connection closes
for good without being asked to (nats-py gives up on a connection the server
closed on a protocol error, e.g. a subject over the control-line limit) or
one of its tasks dies that only a fresh instance can replace
(:attr:`Service.failed`), the instance is stopped and a new one is started
from the same factory on a new connection, with backoff. Restarting the whole
instance rather than re-creating its subscriptions on a new connection is
deliberate: every service already rebuilds its state from the store on start,
and subscriptions, ``nats.micro`` endpoints and JetStream consumers are made
in ``setup()``, so a fresh instance is the one code path that is known to
re-create all of them. :meth:`Service.restart_config` lets an instance pass on
what it chose (the gateway keeps the HTTP port it got).

Each service logs in to NATS as its own user (``credentials.py``,
``permissions.py``): the embedded server is started with an ``authorization``
block and the credentials are made in the data directory on first start; a
configured server is logged in to with ``[nats] creds`` or the data
directory's credentials of that service, and without a login when there are
none.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.credentials import (
    Credentials,
    ensure_credentials,
    find_credentials,
    load_credentials,
    write_server_conf,
)
from services.runtime.datadir import DataDirLock, private_dir, write_private
from services.runtime.logs import get_logger
from services.runtime.natsserver import EmbeddedNats
from services.runtime.service import HEALTHY_AFTER_S, RESTART_MAX_S, RESTART_MIN_S, Service

if TYPE_CHECKING:
    from aiohttp.web import AppRunner

ServiceFactory = Callable[[Bus, Config], Service]
log = get_logger("runner")
NATS_URL_FILE = "nats.url"
"""In the data directory: the URL of the embedded server while it runs."""


async def run(
    config: Config,
    factories: Sequence[tuple[str, ServiceFactory]],
    *,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    connect_deadline: float = 10.0,
    metrics_port: int | None = None,
) -> None:
    """Run ``factories`` until SIGINT/SIGTERM or ``stop``. ``connect_deadline``:
    how long the first connection to NATS may take before start fails with one
    line (signals stop the wait at once). ``metrics_port``: serve these services'
    own Prometheus figures on ``[http] host`` at that port (0: any free one;
    services/ops/local.py) once they run."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    private_dir(config.data_path)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    lock: DataDirLock | None = None
    if config.nats.url is None or any(name == "store" for name, _ in factories):
        lock = DataDirLock(config.data_path)  # the embedded server and the store own files there
        lock.acquire()
    server: EmbeddedNats | None = None
    metrics: AppRunner | None = None
    credentials = _credentials(config, [name for name, _ in factories])
    supervisor = Supervisor(
        config, factories, connect_deadline=connect_deadline, credentials=credentials
    )
    try:
        # Ctrl-C must work while starting too (e.g. NATS is not reachable yet)
        startup = asyncio.create_task(_start(config, supervisor, announce))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({startup, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
        else:
            server = startup.result()
            if server is not None:
                write_private(config.data_path / NATS_URL_FILE, server.url + "\n")
            if metrics_port is not None:
                metrics = await _metrics(config, supervisor, factories, metrics_port, announce)
            announce("gpuroute: running " + ", ".join(n for n, _ in factories) + " (Ctrl-C stops)")
            await stopping
        stopping.cancel()
    finally:
        if metrics is not None:
            await metrics.cleanup()
        await supervisor.stop()
        if server is not None:
            (config.data_path / NATS_URL_FILE).unlink(missing_ok=True)
            await asyncio.to_thread(server.stop)
        if lock is not None:
            lock.release()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _metrics(
    config: Config, supervisor: Supervisor, factories: Sequence[tuple[str, ServiceFactory]],
    port: int, announce: Callable[[str], None],
) -> AppRunner:  # fmt: skip
    from services.ops.local import serve

    runner, url = await serve(supervisor, [n for n, _ in factories], config.http.host, port)
    announce(f"metrics: {url}")
    return runner


def _credentials(config: Config, names: Sequence[str]) -> dict[str, Credentials]:
    """Who each service logs in as: for the embedded server its own user of
    the data directory (made on first start); else ``[nats] creds``, else the
    data directory's file for it; absent: no login."""
    if config.nats.url is None:
        return ensure_credentials(config.data_path)
    if config.nats.creds:
        creds = load_credentials(config.nats.creds)
        return {name: creds for name in names}
    found = {name: find_credentials(config.data_path, name) for name in names}
    return {name: c for name, c in found.items() if c is not None}


async def _start(
    config: Config, supervisor: Supervisor, announce: Callable[[str], None]
) -> EmbeddedNats | None:
    """Start the embedded server (if no URL is configured) and every service
    in order. On failure or cancellation everything started is stopped
    before raising."""
    server: EmbeddedNats | None = None
    url = config.nats.url
    if url is None:
        folder = config.data_path / "nats"
        users = supervisor.credentials.values()  # every user's, the modder's too
        auth = await asyncio.to_thread(write_server_conf, folder, users)
        server = EmbeddedNats(folder, config.nats.host, config.nats.port, config_file=auth,
                              sync=config.nats.sync)  # fmt: skip
        try:
            url = await asyncio.to_thread(server.start)
        except BaseException:
            await asyncio.to_thread(server.stop)
            raise
        announce(f"nats: embedded nats-server with JetStream at {url}")
    try:
        await supervisor.start(url)
    except BaseException:  # failed or cancelled half-way: undo it here, server last
        await supervisor.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)
        raise
    return server


class _Slot:
    """One supervised service: its factory, the running instance, its restarts."""

    __slots__ = ("factory", "name", "restarts", "service", "stopping")

    def __init__(self, name: str, factory: ServiceFactory) -> None:
        self.name = name
        self.factory = factory
        self.service: Service | None = None
        self.stopping: asyncio.Task[None] | None = None
        self.restarts = 0


class Supervisor:
    """Starts services in order, replaces an instance that broke, stops them
    in reverse order. :meth:`current` is the running instance of a service
    (None while it is being replaced)."""

    def __init__(
        self,
        config: Config,
        factories: Sequence[tuple[str, ServiceFactory]],
        *,
        connect_deadline: float = 10.0,
        credentials: Mapping[str, Credentials] | None = None,
    ) -> None:
        self.config = config
        self._connect_deadline = connect_deadline
        self.credentials = dict(credentials or {})
        self._slots = [_Slot(name, factory) for name, factory in factories]
        self._watchers: list[asyncio.Task[None]] = []
        self._url = ""

    def current(self, name: str) -> Service | None:
        return next(s.service for s in self._slots if s.name == name)

    def restarts(self, name: str) -> int:
        return next(s.restarts for s in self._slots if s.name == name)

    async def start(self, url: str) -> None:
        """Start every service in order on its own connection to ``url``,
        then watch each. Raises what a failed start raised (the caller
        stops what was started)."""
        self._url = url
        for slot in self._slots:
            bus = await Bus.connect(
                url,
                source=slot.name,
                connect_deadline=self._connect_deadline,
                credentials=self.credentials.get(slot.name),
            )
            slot.service = slot.factory(bus, self.config)
            await slot.service.start()
        for slot in self._slots:
            self._watchers.append(asyncio.create_task(self._watch(slot), name=f"watch.{slot.name}"))

    async def stop(self) -> None:
        """Stop watching, then stop every instance in reverse order."""
        for watcher in self._watchers:
            watcher.cancel()
        for watcher in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._watchers.clear()
        for slot in reversed(self._slots):
            if slot.stopping is not None:
                await slot.stopping
            service, slot.service = slot.service, None
            if service is not None:
                await _stop(service)

    async def _watch(self, slot: _Slot) -> None:
        """Wait until the instance breaks, replace it; forever."""
        loop = asyncio.get_running_loop()
        delay = RESTART_MIN_S
        while True:
            service = slot.service
            assert service is not None
            born = loop.time()
            why = await _broken(service)
            if loop.time() - born >= HEALTHY_AFTER_S:
                delay = RESTART_MIN_S
            log.error("service broke: starting a fresh instance",
                      extra={"fields": {"service": slot.name, "reason": why,
                                        "restarts": slot.restarts}})  # fmt: skip
            config = service.restart_config()
            slot.service = None
            slot.stopping = asyncio.create_task(_stop(service))
            await asyncio.shield(slot.stopping)  # a cancelled watcher still finishes the stop
            slot.stopping = None
            while slot.service is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX_S)
                slot.service = await self._fresh(slot, config)
            slot.restarts += 1

    async def _fresh(self, slot: _Slot, config: Config) -> Service | None:
        """A started new instance of ``slot``'s service, or None (logged)."""
        try:
            bus = await Bus.connect(
                self._url, source=slot.name, credentials=self.credentials.get(slot.name)
            )
        except Exception as e:
            log.warning("cannot reconnect, retrying",
                        extra={"fields": {"service": slot.name, "error": str(e)}})  # fmt: skip
            return None
        try:
            service = slot.factory(bus, config)
        except Exception as e:
            await bus.close()
            log.error("cannot build a fresh instance, retrying", exc_info=e,
                      extra={"fields": {"service": slot.name}})  # fmt: skip
            return None
        try:
            await service.start()
        except BaseException as e:
            await _stop(service)
            if not isinstance(e, Exception):
                raise
            log.warning("restart failed, retrying",
                        extra={"fields": {"service": slot.name, "error": str(e)}})  # fmt: skip
            return None
        log.info("service restarted", extra={"fields": {"service": slot.name}})
        return service


async def _broken(service: Service) -> str:
    """Wait until ``service``'s connection is lost for good or it failed; say why."""
    lost = asyncio.create_task(service.bus.wait_lost())
    failed = asyncio.create_task(service.failed.wait())
    try:
        await asyncio.wait({lost, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        failed.cancel()
    if service.failed.is_set():
        return service.failure or "failed"
    return "NATS connection closed for good"


async def _stop(service: Service) -> None:
    with contextlib.suppress(Exception):
        await service.stop()
    await service.bus.close()
