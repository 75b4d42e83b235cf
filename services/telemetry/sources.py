"""Where readings come from: NVML and psutil on a real node, recordings in tests.

Side effects (NVML, psutil) enter only through :class:`NvmlTelemetry`, which
takes the ``pynvml`` and ``psutil`` modules as parameters so tests can hand it
fakes; :class:`RecordedTelemetry` replays recorded samples. Both implement
:class:`TelemetrySource`. The sample id and timestamp are passed in, never read
here, so a caller with an injected clock gets reproducible samples.

The sample types live in ``schemas/telemetry.py`` (a sample is the payload of
``telemetry.sampled``). No NVML library, no driver, no GPU: a normal state.
The sample then has zero GPUs and ``reason`` says why. A field NVML cannot
read for one GPU (e.g. power on a card without a sensor) is ``None``
(unknown), never 0, and the NVML error is kept in that device's ``errors``.
Each NVML call is guarded on its own.

Units: MiB (2^20 bytes) for memory as NVML reports it, percent, degrees
Celsius, watts; ``ts`` is unix seconds.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, Protocol, TypeVar

import msgspec

from schemas.telemetry import MIB, GpuDevice, HostStats, TelemetrySample

T = TypeVar("T")


class TelemetrySource(Protocol):
    """Anything that can take a telemetry sample. Blocking; call it in a thread."""

    def sample(self, sample_id: str, ts: float) -> TelemetrySample: ...

    def close(self) -> None: ...


class RecordedTelemetry:
    """Replays recorded samples in order, cycling, with the caller's id and ts."""

    def __init__(self, samples: Sequence[TelemetrySample]) -> None:
        if not samples:
            raise ValueError("RecordedTelemetry needs at least one sample")
        self._cycle: Iterator[TelemetrySample] = itertools.cycle(list(samples))

    def sample(self, sample_id: str, ts: float) -> TelemetrySample:
        recorded = next(self._cycle)
        return msgspec.structs.replace(recorded, sample_id=sample_id, ts=ts, source="recorded")

    def close(self) -> None:
        return None


def _text(value: Any) -> str:
    # nvidia-ml-py returns str; older bindings returned bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlTelemetry:
    """Samples NVML (module ``pynvml`` from ``nvidia-ml-py``) and psutil.

    ``nvml``/``psutil_mod`` default to the real modules, imported lazily; a
    missing module is reported in the sample, not raised. ``nvmlInit`` is
    retried on each sample until it succeeds, so a driver loaded later is seen.
    """

    def __init__(self, nvml: Any = None, psutil_mod: Any = None) -> None:
        self._nvml: Any = nvml
        self._psutil: Any = psutil_mod
        self._import_error: str | None = None
        self._initialized = False
        if self._nvml is None:
            self._nvml, self._import_error = _import("pynvml")
        if self._psutil is None:
            self._psutil, _ = _import("psutil")
        # The exceptions each library raises for "cannot read this": caught per call.
        self._nv_err: type[Exception] = getattr(self._nvml, "NVMLError", OSError)
        self._ps_err: tuple[type[Exception], ...] = (
            getattr(self._psutil, "Error", OSError),
            OSError,
        )
        if self._psutil is not None:
            # The first cpu_percent(None) call only starts the measurement window.
            self._ps(lambda: self._psutil.cpu_percent(interval=None), {}, "cpu")

    def sample(self, sample_id: str, ts: float) -> TelemetrySample:
        host = self._host()
        reason = self._init()
        if reason is not None:
            return TelemetrySample(sample_id=sample_id, ts=ts, host=host, reason=reason)
        nv = self._nvml
        errors: dict[str, str] = {}
        count = self._nv(nv.nvmlDeviceGetCount, errors, "count")
        driver = self._nv(lambda: _text(nv.nvmlSystemGetDriverVersion()), errors, "driver")
        if count is None:
            reason = f"NVML could not count GPUs: {errors['count']}"
        elif count == 0:
            reason = "NVML reports no GPU"
        gpus = tuple(self._device(i) for i in range(count or 0))
        return TelemetrySample(
            sample_id=sample_id, ts=ts, gpus=gpus, host=host, driver_version=driver, reason=reason
        )

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            self._nv(self._nvml.nvmlShutdown, {}, "shutdown")

    def _init(self) -> str | None:
        if self._initialized:
            return None
        if self._nvml is None:
            return f"NVML unavailable: {self._import_error}"
        errors: dict[str, str] = {}
        self._nv(self._nvml.nvmlInit, errors, "init")
        if "init" in errors:
            return f"NVML unavailable: {errors['init']}"
        self._initialized = True
        return None

    def _device(self, index: int) -> GpuDevice:
        nv = self._nvml
        errors: dict[str, str] = {}
        handle = self._nv(lambda: nv.nvmlDeviceGetHandleByIndex(index), errors, "handle")
        if handle is None:
            return GpuDevice(index=index, errors=errors)
        mem = self._nv(lambda: nv.nvmlDeviceGetMemoryInfo(handle), errors, "memory")
        util = self._nv(lambda: nv.nvmlDeviceGetUtilizationRates(handle), errors, "utilization")
        temp_sensor = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        power_mw = self._nv(lambda: nv.nvmlDeviceGetPowerUsage(handle), errors, "power_draw")
        return GpuDevice(
            index=index,
            name=self._nv(lambda: _text(nv.nvmlDeviceGetName(handle)), errors, "name"),
            uuid=self._nv(lambda: _text(nv.nvmlDeviceGetUUID(handle)), errors, "uuid"),
            memory_total_mib=None if mem is None else int(mem.total) // MIB,
            memory_used_mib=None if mem is None else int(mem.used) // MIB,
            memory_free_mib=None if mem is None else int(mem.free) // MIB,
            utilization_gpu_pct=None if util is None else int(util.gpu),
            utilization_memory_pct=None if util is None else int(util.memory),
            temperature_c=self._nv(
                lambda: int(nv.nvmlDeviceGetTemperature(handle, temp_sensor)), errors, "temperature"
            ),
            power_draw_w=None if power_mw is None else round(power_mw / 1000.0, 3),
            errors=errors,
        )

    def _host(self) -> HostStats:
        ps = self._psutil
        if ps is None:
            return HostStats()
        errors: dict[str, str] = {}
        vm = self._ps(ps.virtual_memory, errors, "ram")
        cpu = self._ps(lambda: float(ps.cpu_percent(interval=None)), errors, "cpu")
        return HostStats(
            cpu_percent=cpu,
            cpu_count=self._ps(lambda: ps.cpu_count(logical=True), errors, "cpu_count"),
            ram_total_mib=None if vm is None else int(vm.total) // MIB,
            ram_available_mib=None if vm is None else int(vm.available) // MIB,
            errors=errors,
        )

    def _nv(self, call: Callable[[], T], errors: dict[str, str], field: str) -> T | None:
        return _guard(call, self._nv_err, errors, field)

    def _ps(self, call: Callable[[], T], errors: dict[str, str], field: str) -> T | None:
        return _guard(call, self._ps_err, errors, field)


def _guard(
    call: Callable[[], T],
    exc: type[Exception] | tuple[type[Exception], ...],
    errors: dict[str, str],
    field: str,
) -> T | None:
    """Run one NVML/psutil call; if it raises ``exc``, record why under ``field``.

    Only the library's own "cannot read" errors are caught (``pynvml.NVMLError``
    and its per-status subclasses, ``psutil.Error``/``OSError``): anything else
    is a bug and propagates.
    """
    try:
        return call()
    except exc as e:
        errors[field] = str(e) or type(e).__name__
        return None


def _import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(name), None
    except ImportError as e:
        return None, f"module {name!r} not installed ({e})"
