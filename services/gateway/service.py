"""The gateway as a service: serves the aiohttp app and tracks heartbeats."""

from __future__ import annotations

import errno
import functools

import msgspec
from aiohttp import web
from nats.aio.msg import Msg

from schemas.subjects import HEARTBEAT, PING
from services.gateway.app import create_app
from services.gateway.errors import GatewayError
from services.gateway.heartbeats import HeartbeatTracker
from services.gateway.server import GatewayRunner
from services.ops.http import OPS, Ops
from services.runtime.config import Config
from services.runtime.follow import follow
from services.runtime.service import Service


class GatewayService(Service):
    name = "gateway"
    description = "HTTP and WebSocket front door of gpuroute."

    async def setup(self) -> None:
        settings = self.config.gateway
        self.heartbeats = HeartbeatTracker(
            self.clock, self.config.heartbeat_s, max_instances=settings.max_instances
        )

        async def on_beat(msg: Msg) -> None:
            self.heartbeats.record(msg.data)

        self._beats = await self.bus.nc.subscribe(HEARTBEAT, cb=on_beat)
        await self.bus.nc.publish(PING)  # services started earlier beat now, not in 5 s
        http = self.config.http
        self.app = create_app(
            self.bus,
            functools.partial(follow, self.bus),
            self.heartbeats,
            settings,
            bind_host=http.host,
        )
        expected = settings.expect_services or ["store"]
        self.app[OPS] = Ops(self.bus.nc, self.config, expected)  # doctor and /metrics
        self._runner = GatewayRunner(
            self.app, request_timeout_s=settings.request_timeout_s, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, http.host, http.port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            await self._beats.unsubscribe()
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"failed: {e.strerror}"
            raise GatewayError(
                f"http port {http.port} on {http.host} {reason} (pick another with --http-port)"
            ) from e
        self.port = self._runner.addresses[0][1] if self._runner.addresses else http.port
        self.url = f"http://{http.host}:{self.port}"
        self.log.info("listening", extra={"fields": {"url": self.url}})

    async def teardown(self) -> None:
        # setup may have failed part way: undo only what it did
        runner, beats = getattr(self, "_runner", None), getattr(self, "_beats", None)
        if runner is not None:
            await runner.cleanup()
        if beats is not None:
            await beats.unsubscribe()

    def restart_config(self) -> Config:
        """A replacement serves on the port this instance got (``--http-port 0`` too)."""
        http = msgspec.structs.replace(self.config.http, port=self.port)
        return msgspec.structs.replace(self.config, http=http)
