"""Telemetry: the GPUs and host of one node, and its event.

Events (stored; published by the telemetry service of each node, folded by the
advisor and the budget service):

    telemetry.sampled     TelemetrySample: GPUs (NVML) and host (psutil) of one node

A node publishes a sample when a reading moved past its deadband or a
keep-alive interval passed (services/telemetry/, docs/telemetry.md), so the
newest sample of a node is its current state until the next one.

Payloads are lenient so an older reader skips newer fields. ``None`` in a
reading means the field could not be read, never 0. Units: MiB as NVML and
psutil report memory; the ``*_gb`` properties convert to GB (10^9 bytes), the
unit VRAM demand is estimated in.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.envelope import Timestamp, event_type
from schemas.limits import MAX_NAME, MAX_TEXT

# Finite ranges: a forged or corrupt reading (JSON 1e309 is inf) is refused at
# decode instead of reaching a decision's arithmetic.
MiB = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]

MIB = 1 << 20

NodeId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
"""A node's id: by default its host name (letters, digits, ``.``, ``_``, ``-``)."""


class GpuDevice(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU as NVML reported it. ``None`` = NVML could not read that field
    (the NVML error is in ``errors``), never 0."""

    index: int
    name: str | None = None
    uuid: str | None = None
    memory_total_mib: MiB | None = None
    memory_used_mib: MiB | None = None
    memory_free_mib: MiB | None = None
    utilization_gpu_pct: Percent | None = None
    utilization_memory_pct: Percent | None = None
    temperature_c: Annotated[int, msgspec.Meta(ge=-273, le=1000)] | None = None
    power_draw_w: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None
    errors: dict[str, str] = {}

    @property
    def free_gb(self) -> float | None:
        """Free VRAM in GB (10^9 bytes), the unit VRAM demand is estimated in."""
        return None if self.memory_free_mib is None else self.memory_free_mib * MIB / 1e9

    @property
    def total_gb(self) -> float | None:
        return None if self.memory_total_mib is None else self.memory_total_mib * MIB / 1e9


class HostStats(msgspec.Struct, frozen=True, kw_only=True):
    cpu_percent: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    cpu_count: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None
    ram_total_mib: MiB | None = None
    ram_available_mib: MiB | None = None
    errors: dict[str, str] = {}

    @property
    def ram_available_gb(self) -> float | None:
        return None if self.ram_available_mib is None else self.ram_available_mib * MIB / 1e9


class TelemetrySample(msgspec.Struct, frozen=True, kw_only=True):
    """One telemetry reading: the payload of ``telemetry.sampled``.

    ``sample_id`` equals the id of the event that carried it. ``reason`` is set
    when GPUs could not be listed (no library, no driver, no GPU: a normal
    state); ``source`` says what produced it (``nvml``, ``recorded``, ``none``).
    ``node`` is the node sampled (None: a sample from before nodes, when the
    advisor sampled its own host); ``trigger`` says why it was published (the
    reading that moved past its deadband, ``first sample``, ``keep-alive``).
    """

    sample_id: str
    ts: Timestamp
    gpus: tuple[GpuDevice, ...] = ()
    host: HostStats = HostStats()
    driver_version: str | None = None
    reason: str | None = None
    source: str = "nvml"
    node: NodeId | None = None
    trigger: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None = None


def empty_sample(sample_id: str, ts: float, reason: str) -> TelemetrySample:
    """A sample with nothing known: for a decision made before any telemetry arrived."""
    return TelemetrySample(sample_id=sample_id, ts=ts, reason=reason, source="none")


TelemetrySampledEvent = event_type(
    "telemetry.sampled",
    TelemetrySample,
    "A reading of one node's GPUs (NVML) and host (psutil), published when it moved.",
    publishers=("telemetry",),
    readers=("advisor", "budget"),
)
