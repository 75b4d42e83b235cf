"""The telemetry service: one per node, ``gpuroute serve telemetry`` (``up`` starts it).

Every ``[telemetry] interval_s`` it takes a reading of this node's GPUs and host
(:class:`~services.telemetry.sources.NvmlTelemetry` in a worker thread, or the
source it was given) and publishes it as ``telemetry.sampled``, keyed and
marked with the node id, when :class:`~services.telemetry.deadband.Gate` says
so: the first reading, a reading that moved past its deadband since the last
one published, or a keep-alive. The event id is the sample id.

No NVML library, driver or GPU is a normal state: the samples say why in
``reason`` (logged once, and again when it changes). A publish that fails
(NATS away) is logged and counted; the next reading is compared with the last
sample that *was* published, so nothing that moved is lost. A source that
raises anything but its library's own errors is a bug: the sampler loop dies,
is named in the heartbeat's faults and restarts with backoff.
"""

from __future__ import annotations

import asyncio

import msgspec

from schemas import make_event
from schemas.telemetry import TelemetrySample
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.errors import GpurouteError
from services.runtime.service import Service
from services.telemetry.deadband import Gate
from services.telemetry.sources import NvmlTelemetry, TelemetrySource


class SamplerStats(msgspec.Struct, kw_only=True):
    """Counters since this instance started."""

    taken: int = 0
    published: int = 0
    publish_failures: int = 0


class TelemetryService(Service):
    name = "telemetry"
    description = "Samples this node's GPUs (NVML) and host (psutil) into telemetry.sampled."

    def __init__(self, bus: Bus, config: Config, *, source: TelemetrySource | None = None) -> None:
        super().__init__(bus, config)
        self.settings = config.telemetry
        self.node = self.settings.node_id()
        self.source = source
        """None: the real NVML/psutil source, made in a worker thread on start."""
        self.gate = Gate(self.settings.deadband, self.settings.keepalive_s)
        self.stats = SamplerStats()
        self._reason_logged: tuple[str | None] | None = None  # None: nothing logged yet

    async def setup(self) -> None:
        self.supervise(self._sample_forever, "sampler")

    async def teardown(self) -> None:
        if self.source is not None:
            await asyncio.to_thread(self.source.close)

    async def _sample_forever(self) -> None:
        if self.source is None:
            self.source = await asyncio.to_thread(NvmlTelemetry)
            self.log.info("sampling", extra={"fields": {"node": self.node}})
        while True:
            await self.sample_once(self.source)
            await asyncio.sleep(self.settings.interval_s)

    async def sample_once(self, source: TelemetrySource) -> TelemetrySample | None:
        """Take one reading and publish it if the gate says so; returns the sample
        published (None: within every deadband, or the publish failed)."""
        sample_id = self.bus.ids.new()
        taken = await asyncio.to_thread(source.sample, sample_id, self.clock.now())
        now = self.clock.monotonic()
        self.stats.taken += 1
        sample = msgspec.structs.replace(taken, sample_id=sample_id, node=self.node)
        trigger = self.gate.trigger(sample, now)
        if trigger is None:
            return None
        sample = msgspec.structs.replace(sample, trigger=trigger)
        event = make_event(
            sample,
            id=sample_id,
            key=self.node,
            ts=sample.ts,
            source=self.name,
            correlation_id=sample_id,
        )
        try:
            await self.bus.publish(event)
        except GpurouteError as e:
            self.stats.publish_failures += 1
            self.log.warning("telemetry not published", extra={"fields": {"error": str(e)}})
            return None
        self.gate.published(sample, now)
        self.stats.published += 1
        self.log.debug("published", extra={"fields": {"id": sample_id, "trigger": trigger}})
        self._log_reason(sample)
        return sample

    def _log_reason(self, sample: TelemetrySample) -> None:
        """Say what GPUs this node has, or why none: once, and on each change."""
        if self._reason_logged == (sample.reason,):
            return
        self._reason_logged = (sample.reason,)
        fields = {"node": self.node, "gpus": len(sample.gpus), "reason": sample.reason}
        self.log.info("GPUs on this node", extra={"fields": fields})
