"""Run services in one process: ``gpuroute up`` (all) and ``gpuroute serve NAME``.

Starts the embedded nats-server when no NATS URL is configured, gives each
service its own connection (as it would have deployed alone), starts them in
order, and on SIGINT/SIGTERM stops them in reverse order, drains their
connections and stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.natsserver import EmbeddedNats
from services.runtime.service import Service

ServiceFactory = Callable[[Bus, Config], Service]


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

    server: EmbeddedNats | None = None
    url = config.nats.url
    if url is None:
        server = EmbeddedNats(config.data_path / "nats", config.nats.host, config.nats.port)
        url = await asyncio.to_thread(server.start)
        announce(f"nats: embedded nats-server with JetStream at {url}")
    started: list[Service] = []
    try:
        for name, factory in factories:
            bus = await Bus.connect(url, source=name)
            service = factory(bus, config)
            started.append(service)
            await service.start()
        announce("gpuroute: running " + ", ".join(n for n, _ in factories) + " (Ctrl-C stops)")
        await stop.wait()
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()
            await service.bus.close()
        if server is not None:
            await asyncio.to_thread(server.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
