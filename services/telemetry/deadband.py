"""Which readings are worth an event: deadbands and a keep-alive.

Sampling is periodic; publishing is what :class:`Gate` decides. It compares a
new sample with the last *published* one, not the last taken, so a reading
that drifts a little each time is published once its total drift passes the
band. Pure: no clock (the caller passes monotonic seconds), no I/O.

An idle node publishes once per ``keepalive_s``; a busy one about once per
change a decision could care about (a job loading a model moves VRAM used by
more than any sensible band at once).
"""

from __future__ import annotations

from collections.abc import Iterator

from schemas.telemetry import GpuDevice, TelemetrySample
from schemas.telemetry_settings import Deadbands


def moved(old: TelemetrySample, new: TelemetrySample, bands: Deadbands) -> str | None:
    """What in ``new`` moved past its deadband since ``old``, as a sentence with the
    numbers (the first such reading); None when every reading is inside its band."""
    return next(_changes(old, new, bands), None)


_GPU_READINGS = (
    ("VRAM used", "memory_used_mib", "vram_mb", "MiB"),
    ("VRAM free", "memory_free_mib", "vram_mb", "MiB"),
    ("utilisation", "utilization_gpu_pct", "gpu_util_pct", "%"),
    ("temperature", "temperature_c", "temperature_c", "C"),
)
"""(label, GpuDevice field, Deadbands field, unit) of each banded GPU reading."""


def _changes(old: TelemetrySample, new: TelemetrySample, bands: Deadbands) -> Iterator[str]:
    for label, a, b in (
        ("node", old.node, new.node),
        ("reason", old.reason, new.reason),
        ("driver", old.driver_version, new.driver_version),
        ("source", old.source, new.source),
    ):
        if a != b:
            yield f"{label} changed: {a!r} -> {b!r}"
    if len(old.gpus) != len(new.gpus):
        yield f"GPUs: {len(old.gpus)} -> {len(new.gpus)}"
    for g, h in zip(old.gpus, new.gpus, strict=False):
        yield from _gpu_changes(g, h, bands)
    o, n = old.host, new.host
    if (o.cpu_count, o.ram_total_mib) != (n.cpu_count, n.ram_total_mib):
        yield (
            f"host changed: {o.cpu_count} -> {n.cpu_count} CPUs,"
            f" {o.ram_total_mib} -> {n.ram_total_mib} MiB RAM"
        )
    if set(o.errors) != set(n.errors):
        yield f"host errors: {sorted(o.errors)} -> {sorted(n.errors)}"
    ram = bands.ram_mb
    yield from _reading("RAM available", o.ram_available_mib, n.ram_available_mib, ram, "MiB")
    yield from _reading("CPU", o.cpu_percent, n.cpu_percent, bands.cpu_pct, "%")


def _gpu_changes(g: GpuDevice, h: GpuDevice, bands: Deadbands) -> Iterator[str]:
    what = f"GPU {h.index}"
    if (g.index, g.name, g.uuid, g.memory_total_mib) != (
        h.index,
        h.name,
        h.uuid,
        h.memory_total_mib,
    ):
        yield f"{what} is now {h.name} ({h.uuid}, {h.memory_total_mib} MiB), was {g.name}"
    if set(g.errors) != set(h.errors):
        yield f"{what} errors: {sorted(g.errors)} -> {sorted(h.errors)}"
    for label, field, band, unit in _GPU_READINGS:
        old, new = getattr(g, field), getattr(h, field)
        yield from _reading(f"{what} {label}", old, new, getattr(bands, band), unit)


def _reading(
    label: str, old: float | None, new: float | None, band: float, unit: str
) -> Iterator[str]:
    if old is None and new is None:
        return
    if old is None or new is None:
        yield f"{label}: {_show(old, unit)} -> {_show(new, unit)}"
    elif abs(new - old) > band:
        yield f"{label}: {old:g} -> {new:g} {unit}, past the deadband of {band:g}"


def _show(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:g} {unit}"


class Gate:
    """Decides which samples are published: the first one, one that
    :func:`moved` past a deadband since the last published one, and one when
    ``keepalive_s`` passed since the last published one. Call :meth:`trigger`
    for each sample taken and :meth:`published` once one was sent, so a failed
    publish is tried again with the next sample."""

    def __init__(self, bands: Deadbands, keepalive_s: float) -> None:
        self.bands = bands
        self.keepalive_s = keepalive_s
        self.last: TelemetrySample | None = None
        """The last published sample: what the log says this node looks like."""
        self._last_at = 0.0

    def trigger(self, sample: TelemetrySample, now: float) -> str | None:
        """Why ``sample``, taken at monotonic second ``now``, should be published;
        None: it should not (nothing moved, keep-alive not due)."""
        if self.last is None:
            return "first sample"
        change = moved(self.last, sample, self.bands)
        if change is not None:
            return change
        if now - self._last_at >= self.keepalive_s:
            return f"keep-alive: nothing moved past its deadband in {self.keepalive_s:g} s"
        return None

    def published(self, sample: TelemetrySample, now: float) -> None:
        self.last, self._last_at = sample, now
