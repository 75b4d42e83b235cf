"""The GPUs of this node as NVML sees them, and whether each is safe to use.

:func:`probe` reads NVML (the ``pynvml`` module of ``nvidia-ml-py``, passed in
so tests can hand a recording) once: driver version, and per GPU its memory,
utilisation, temperature, uncorrected ECC errors and the processes holding
VRAM. Every NVML call is guarded on its own; a missing library, driver or
GPU is a :class:`GpuProbe` with no GPUs and the reason NVML gave.
:func:`gpu_checks` turns a probe into doctor checks: no GPU is a warn; a GPU
that is visible but unsafe (ECC errors, too hot, VRAM full) is a warn that
says the advisor will fall back to CPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from schemas.ops_settings import OpsSettings
from services.ops.report import Check, passed, warned

T = TypeVar("T")
MIB = 1 << 20


class GpuState(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    name: str | None = None
    uuid: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_pct: int | None = None
    temperature_c: int | None = None
    ecc_uncorrected: int | None = None
    """Volatile uncorrected ECC errors since the driver loaded (None: no ECC)."""
    processes: list[str] = []
    """``pid (MiB)`` of each compute process holding memory on it."""


class GpuProbe(msgspec.Struct, frozen=True, kw_only=True):
    gpus: list[GpuState] = []
    driver: str | None = None
    reason: str | None = None
    """Why there is no GPU (NVML's words); None when NVML answered."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _load_nvml() -> Any:
    return importlib.import_module("pynvml")


def probe(nvml: Any = None) -> GpuProbe:
    """One look at NVML; never raises for what NVML reports."""
    try:
        nv = nvml if nvml is not None else _load_nvml()
    except ImportError as e:
        return GpuProbe(reason=f"NVML unavailable: module 'pynvml' not installed ({e})")
    err: type[Exception] = getattr(nv, "NVMLError", OSError)

    def call(f: Callable[[], T]) -> T | None:
        try:
            return f()
        except err:
            return None

    try:
        nv.nvmlInit()
    except err as e:
        return GpuProbe(reason=f"NVML unavailable: {e}")
    try:
        count = nv.nvmlDeviceGetCount()
    except err as e:
        return GpuProbe(reason=f"NVML could not count GPUs: {e}")
    try:
        driver = call(lambda: _text(nv.nvmlSystemGetDriverVersion()))
        gpus = [_device(nv, i, call) for i in range(count)]
    finally:
        call(nv.nvmlShutdown)
    return GpuProbe(gpus=gpus, driver=driver, reason=None if gpus else "NVML reports no GPU")


def _device(nv: Any, index: int, call: Callable[[Callable[[], Any]], Any]) -> GpuState:
    h = call(lambda: nv.nvmlDeviceGetHandleByIndex(index))
    if h is None:
        return GpuState(index=index)
    mem = call(lambda: nv.nvmlDeviceGetMemoryInfo(h))
    util = call(lambda: nv.nvmlDeviceGetUtilizationRates(h))
    sensor = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
    ecc = call(lambda: int(nv.nvmlDeviceGetTotalEccErrors(
        h, getattr(nv, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1),
        getattr(nv, "NVML_VOLATILE_ECC", 0))))  # fmt: skip
    procs = call(lambda: nv.nvmlDeviceGetComputeRunningProcesses(h)) or []
    return GpuState(
        index=index,
        name=call(lambda: _text(nv.nvmlDeviceGetName(h))),
        uuid=call(lambda: _text(nv.nvmlDeviceGetUUID(h))),
        memory_total_mib=None if mem is None else int(mem.total) // MIB,
        memory_used_mib=None if mem is None else int(mem.used) // MIB,
        utilization_pct=None if util is None else int(util.gpu),
        temperature_c=call(lambda: int(nv.nvmlDeviceGetTemperature(h, sensor))),
        ecc_uncorrected=ecc,
        processes=[f"{p.pid} ({int(p.usedGpuMemory or 0) // MIB} MiB)" for p in procs],
    )


def unsafe(gpu: GpuState, settings: OpsSettings) -> list[str]:
    """Why ``gpu`` must not take work (empty: it may)."""
    why = []
    if gpu.ecc_uncorrected:
        why.append(f"{gpu.ecc_uncorrected} uncorrected ECC errors")
    if gpu.temperature_c is not None and gpu.temperature_c >= settings.max_gpu_temp_c:
        why.append(f"{gpu.temperature_c} C (limit {settings.max_gpu_temp_c} C)")
    total, used = gpu.memory_total_mib, gpu.memory_used_mib
    if total and used is not None and used * 100 >= settings.vram_full_pct * total:
        why.append(f"VRAM full: {used} of {total} MiB used")
    return why


def gpu_checks(found: GpuProbe, settings: OpsSettings) -> list[Check]:
    if not found.gpus:
        return [warned("gpu.nvml", f"no GPU: {found.reason}",
                       "jobs run on the CPU or a cloud GPU; on a GPU node install the "
                       "NVIDIA driver and check nvidia-smi")]  # fmt: skip
    out = []
    for g in found.gpus:
        name = f"gpu.{g.index}"
        evidence = [f"driver {found.driver}", f"uuid {g.uuid}",
                    f"memory {g.memory_used_mib}/{g.memory_total_mib} MiB, "
                    f"utilisation {g.utilization_pct}%, {g.temperature_c} C",
                    "processes holding VRAM: " + (", ".join(g.processes) or "none")]  # fmt: skip
        why = unsafe(g, settings)
        if why:
            out.append(warned(name, f"{g.name} is visible but unsafe: {'; '.join(why)}; the "
                              "advisor falls back to CPU for it",
                              "nvidia-smi -q -i " + str(g.index) + " (ECC, thermals), stop what "
                              "holds its memory, then gpuroute doctor", evidence))  # fmt: skip
        else:
            out.append(passed(name, f"{g.name}: usable", evidence))
    return out
