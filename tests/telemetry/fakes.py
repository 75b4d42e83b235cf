"""A fake ``pynvml`` and ``psutil`` for the sampler (no GPU on the test machines)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pynvml

from schemas.telemetry import MIB

NOT_SUPPORTED = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
GPU_LOST = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
LIB_MISSING = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def _value(v: Any) -> Any:
    if isinstance(v, Exception):
        raise v
    return v


class FakeNvml:
    """The slice of the ``pynvml`` API the sampler calls. A device field set to
    an exception raises it, as NVML does for a field a card cannot report."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(
        self,
        devices: list[dict[str, Any]],
        init: Exception | None = None,
        count: Exception | None = None,
    ) -> None:
        self.devices = devices
        self.init_error = init
        self.count_error = count
        self.init_calls = 0
        self.shutdown_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        _value(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        _value(self.count_error)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return _value(self.devices[i].get("handle", self.devices[i]))  # type: ignore[no-any-return]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> Any:
        return _value(h["name"])

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> Any:
        return _value(h["uuid"])

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        return _value(h["memory"])

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return _value(h["util"])

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> Any:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return _value(h["temp"])

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> Any:
        return _value(h["power_mw"])


def device(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "NVIDIA GeForce RTX 4090",
        "uuid": "GPU-1234",
        "memory": SimpleNamespace(total=24564 * MIB, used=1564 * MIB, free=23000 * MIB),
        "util": SimpleNamespace(gpu=7, memory=2),
        "temp": 44,
        "power_mw": 35_250,
    }
    d.update(overrides)
    return d


class FakePsutil:
    Error = OSError

    def __init__(self, fail_ram: bool = False) -> None:
        self.fail_ram = fail_ram

    def cpu_percent(self, interval: float | None = None) -> float:
        return 25.0

    def cpu_count(self, logical: bool = True) -> int:
        return 16

    def virtual_memory(self) -> Any:
        if self.fail_ram:
            raise PermissionError("denied")
        return SimpleNamespace(total=64 * 1024 * MIB, available=40 * 1024 * MIB)
