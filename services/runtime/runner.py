"""Run services in one process: ``gpuroute up`` (all) and ``gpuroute serve NAME``.

Starts the embedded nats-server when no NATS URL is configured, gives each
service its own connection (as it would have deployed alone), starts them in
order, and on SIGINT/SIGTERM stops them in reverse order, drains their
connections and stops the server. While the embedded server runs, its URL is in
``<data-dir>/nats.url`` (mode 0600, removed on stop) for ``tail`` and ``serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.datadir import DataDirLock
from services.runtime.natsserver import EmbeddedNats
from services.runtime.service import Service

ServiceFactory = Callable[[Bus, Config], Service]
NATS_URL_FILE = "nats.url"
"""In the data directory: the URL of the embedded server while it runs."""


async def run(
    config: Config,
    factories: Sequence[tuple[str, ServiceFactory]],
    *,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    lock: DataDirLock | None = None
    if config.nats.url is None or any(name == "store" for name, _ in factories):
        lock = DataDirLock(config.data_path)  # the embedded server and the store own files there
        lock.acquire()
    server: EmbeddedNats | None = None
    started: list[Service] = []
    try:
        # Ctrl-C must work while starting too (e.g. NATS is not reachable yet)
        startup = asyncio.create_task(_start(config, factories, started, announce))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({startup, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
        else:
            server = startup.result()
            if server is not None:
                _write_private(config.data_path / NATS_URL_FILE, server.url + "\n")
            announce("gpuroute: running " + ", ".join(n for n, _ in factories) + " (Ctrl-C stops)")
            await stopping
        stopping.cancel()
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()
            await service.bus.close()
        if server is not None:
            (config.data_path / NATS_URL_FILE).unlink(missing_ok=True)
            await asyncio.to_thread(server.stop)
        if lock is not None:
            lock.release()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    os.replace(tmp, path)


async def _start(
    config: Config,
    factories: Sequence[tuple[str, ServiceFactory]],
    started: list[Service],
    announce: Callable[[str], None],
) -> EmbeddedNats | None:
    """Start the embedded server (if no URL is configured) and every service
    in order; ``started`` collects each service as it starts, for stopping.
    On failure or cancellation everything started is stopped before raising."""
    server: EmbeddedNats | None = None
    url = config.nats.url
    if url is None:
        server = EmbeddedNats(config.data_path / "nats", config.nats.host, config.nats.port)
        try:
            url = await asyncio.to_thread(server.start)
        except BaseException:
            await asyncio.to_thread(server.stop)
            raise
        announce(f"nats: embedded nats-server with JetStream at {url}")
    try:
        for name, factory in factories:
            bus = await Bus.connect(url, source=name)
            service = factory(bus, config)
            started.append(service)
            await service.start()
    except BaseException:  # failed or cancelled half-way: undo it here, server last
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()
            await service.bus.close()
        started.clear()
        if server is not None:
            await asyncio.to_thread(server.stop)
        raise
    return server
