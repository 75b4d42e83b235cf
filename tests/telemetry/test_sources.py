"""Telemetry sources against a fake ``pynvml`` (no GPU here) and the real no-NVML path."""

from __future__ import annotations

import sys

import msgspec
import pynvml
import pytest

from schemas import decode_event, encode_event, make_event
from schemas.telemetry import MIB, GpuDevice, TelemetrySample, empty_sample
from services.telemetry.sources import NvmlTelemetry, RecordedTelemetry, TelemetrySource

from .fakes import GPU_LOST, LIB_MISSING, NOT_SUPPORTED, FakeNvml, FakePsutil, device


def test_reads_every_field() -> None:
    nv = FakeNvml([device(), device(name=b"Tesla T4", uuid=b"GPU-5678")])
    source: TelemetrySource = NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil())
    s = source.sample("s-1", 12.5)
    assert (s.sample_id, s.ts, s.reason, s.driver_version) == ("s-1", 12.5, None, "550.54.15")
    g = s.gpus[0]
    assert (g.index, g.name, g.uuid) == (0, "NVIDIA GeForce RTX 4090", "GPU-1234")
    assert (g.memory_total_mib, g.memory_used_mib, g.memory_free_mib) == (24564, 1564, 23000)
    assert (g.utilization_gpu_pct, g.utilization_memory_pct) == (7, 2)
    assert (g.temperature_c, g.power_draw_w, g.errors) == (44, 35.25, {})
    assert g.free_gb == pytest.approx(23000 * MIB / 1e9)
    assert s.gpus[1].name == "Tesla T4"  # bytes from older bindings are decoded
    assert s.host.cpu_percent == 25.0
    assert (s.host.ram_total_mib, s.host.ram_available_mib) == (65536, 40960)


def test_unreadable_field_is_unknown_not_zero() -> None:
    nv = FakeNvml([device(power_mw=NOT_SUPPORTED, temp=NOT_SUPPORTED, util=GPU_LOST)])
    g = NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil()).sample("s", 0.0).gpus[0]
    assert g.power_draw_w is None
    assert g.temperature_c is None
    assert g.utilization_gpu_pct is None and g.utilization_memory_pct is None
    assert g.memory_free_mib == 23000  # the other calls still succeed
    assert g.errors == {
        "power_draw": "Not Supported",
        "temperature": "Not Supported",
        "utilization": "GPU is lost",
    }


def test_device_without_handle_keeps_its_index() -> None:
    nv = FakeNvml([device(handle=GPU_LOST), device()])
    s = NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil()).sample("s", 0.0)
    assert s.gpus[0] == GpuDevice(index=0, errors={"handle": "GPU is lost"})
    assert s.gpus[1].memory_free_mib == 23000


def test_no_library_is_a_normal_state_and_init_is_retried() -> None:
    nv = FakeNvml([device()], init=LIB_MISSING)
    source = NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil())
    s = source.sample("s", 0.0)
    assert s.gpus == ()
    assert s.reason == "NVML unavailable: NVML Shared Library Not Found"
    assert s.host.cpu_count == 16  # host stats do not depend on NVML
    nv.init_error = None  # driver installed later
    assert len(source.sample("s2", 1.0).gpus) == 1
    source.close()
    source.close()
    assert (nv.init_calls, nv.shutdown_calls) == (2, 1)


def test_no_gpu_and_count_failure_give_reasons() -> None:
    assert NvmlTelemetry(nvml=FakeNvml([]), psutil_mod=FakePsutil()).sample("s", 0).reason == (
        "NVML reports no GPU"
    )
    broken = FakeNvml([device()], count=pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN))
    s = NvmlTelemetry(nvml=broken, psutil_mod=FakePsutil()).sample("s", 0)
    assert s.gpus == () and s.reason is not None and s.reason.startswith("NVML could not count")


def test_psutil_failure_is_unknown() -> None:
    s = NvmlTelemetry(nvml=FakeNvml([]), psutil_mod=FakePsutil(fail_ram=True)).sample("s", 0)
    assert s.host.ram_total_mib is None and s.host.ram_available_mib is None
    assert s.host.errors == {"ram": "denied"}
    assert s.host.cpu_percent == 25.0


def test_a_bug_is_not_swallowed() -> None:
    nv = FakeNvml([device(temp=KeyError("bug"))])
    with pytest.raises(KeyError):
        NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil()).sample("s", 0)


def test_real_machine_without_nvml() -> None:
    """This machine has no NVIDIA driver: the real pynvml reports that, nothing raises."""
    source = NvmlTelemetry()
    s = source.sample("real", 1.0)
    source.close()
    if s.gpus:
        pytest.skip("an NVIDIA GPU is visible here")
    assert s.reason is not None and s.reason.startswith("NVML")
    assert s.host.ram_total_mib is not None and s.host.ram_total_mib > 0
    assert s.host.cpu_count is not None and s.host.cpu_count >= 1


def test_missing_pynvml_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    s = NvmlTelemetry(psutil_mod=FakePsutil()).sample("s", 0)
    assert s.gpus == ()
    assert s.reason is not None and "'pynvml' not installed" in s.reason


def test_recorded_replays_in_order_with_fresh_ids() -> None:
    a = TelemetrySample(sample_id="rec-a", ts=1.0, gpus=(GpuDevice(index=0, memory_free_mib=1),))
    b = empty_sample("rec-b", 2.0, "no GPU")
    source: TelemetrySource = RecordedTelemetry([a, b])
    got = [source.sample(f"n{i}", 10.0 + i) for i in range(3)]
    assert [g.sample_id for g in got] == ["n0", "n1", "n2"]
    assert [g.ts for g in got] == [10.0, 11.0, 12.0]
    assert got[0].gpus == a.gpus and got[1].reason == "no GPU" and got[2].gpus == a.gpus
    assert {g.source for g in got} == {"recorded"}
    with pytest.raises(ValueError):
        RecordedTelemetry([])


def test_sample_round_trips_as_an_event_payload() -> None:
    nv = FakeNvml([device(power_mw=NOT_SUPPORTED)])
    s = NvmlTelemetry(nvml=nv, psutil_mod=FakePsutil()).sample("s", 3.0)
    raw = encode_event(make_event(s, id="s", key="host", ts=3.0, source="advisor"))
    assert raw.startswith(b'{"type":"telemetry.sampled"')
    assert b'"power_draw_w":null' in raw
    assert decode_event(raw).payload == s
    assert msgspec.json.decode(msgspec.json.encode(s), type=TelemetrySample) == s
