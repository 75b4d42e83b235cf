"""gpuroute doctor against a real nats-server and store: healthy, store killed,
NATS down, a model file still growing, and the pure checks it is built from."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import nats

from schemas.ops_settings import OpsSettings
from services.ops import gpu
from services.ops.cluster import observe
from services.ops.connect import doctor
from services.ops.doctor import Probes, run_doctor
from services.ops.growth import DAY_S, growth_checks
from services.ops.host import restart_loops
from services.ops.report import Check, DoctorReport
from services.runtime.bus import Bus
from services.runtime.config import Config, load_config
from services.runtime.natsserver import EmbeddedNats
from tests.support import lifecycle

NO_GPU = gpu.GpuProbe(reason="NVML unavailable: NVML Shared Library Not Found")


def by_name(report: DoctorReport) -> dict[str, Check]:
    return {c.name: c for c in report.checks}


async def no_wait(_: float) -> None:
    return None


def probes(**kw: object) -> Probes:
    defaults: dict[str, object] = dict(sleep=no_wait, gpu=lambda _: NO_GPU,
                                       ram_available_mib=lambda: 1 << 20)  # fmt: skip
    return Probes(**{**defaults, **kw})  # type: ignore[arg-type]


def ops_config(config: Config, server: EmbeddedNats, **ops: object) -> Config:
    settings = msgspec.convert({"nats_conf": str(server.store_dir / "server.conf"),
                                "listen_s": 0.3, **ops}, OpsSettings)  # fmt: skip
    return msgspec.structs.replace(config, ops=settings)


async def test_healthy_stack_passes_every_check_but_the_gpu(
    config: Config, nats_server: EmbeddedNats, store: object
) -> None:
    cfg = ops_config(config, nats_server)
    report = await doctor(cfg, nats_server.url, None, ["store"], probes())
    bad = [c for c in report.checks if c.status != "pass"]
    assert [c.name for c in bad] == ["gpu.nvml"], bad
    assert report.ok and bad[0].status == "warn" and "NVML Shared Library" in bad[0].summary
    checks = by_name(report)
    assert "nats-server 2." in checks["nats.reachable"].summary
    assert "1 replica(s)" in checks["nats.stream"].summary
    assert checks["nats.sync_interval"].summary.startswith("always")
    assert "0 pending" in checks["store.lag"].summary
    assert "quick_check ok" in checks["store.file"].summary


async def test_killed_store_fails_with_restart_step(
    config: Config, nats_server: EmbeddedNats, store: object
) -> None:
    await store.stop()  # type: ignore[attr-defined]
    cfg = ops_config(config, nats_server)
    report = await doctor(cfg, nats_server.url, None, ["store"], probes())
    checks = by_name(report)
    assert not report.ok
    for name in ("store.service", "service.store"):
        assert checks[name].status == "fail", checks[name]
        assert "gpuroute serve store" in checks[name].next_step
    assert "unreachable" in checks["store.service"].summary
    assert "store" in report.unreachable


async def test_nats_down_fails_first_and_node_checks_still_run(config: Config) -> None:
    report = await doctor(config, "nats://127.0.0.1:1", None, ["store"], probes(),
                          deadline_s=0.5)  # fmt: skip
    checks = by_name(report)
    first = report.checks[0]
    assert first.name == "nats.reachable" and first.status == "fail"
    assert "unreachable at nats://127.0.0.1:1" in first.summary
    assert "gpuroute up" in first.next_step
    assert checks["service.store"].summary == "unreachable: NATS is down"
    assert "disk.data" in checks and "gpu.nvml" in checks  # the node is still checked
    assert "nats" in report.unreachable


async def test_growing_model_file_fails_with_both_sizes(config: Config, tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    model = root / "sd.safetensors"
    model.write_bytes(b"x" * 100)
    (root / "ok.bin").write_bytes(b"y" * 10)

    async def copy_goes_on(seconds: float) -> None:
        assert seconds == 5
        with model.open("ab") as f:
            f.write(b"x" * 50)

    cfg = msgspec.structs.replace(config, ops=OpsSettings(
        model_roots=[str(root)], model_files=["sd.safetensors", "ok.bin", "/etc/passwd"],
        settle_s=5))  # fmt: skip
    report = await run_doctor(None, cfg, [], why="down", probes=probes(sleep=copy_goes_on))
    checks = by_name(report)
    growing = checks["model.sd.safetensors"]
    assert growing.status == "fail"
    assert "100 B, then 150 B 5s later" in growing.summary
    assert "wait for the copy" in growing.next_step
    assert any(e.startswith(f"ls {root}: ok.bin (10 B), sd.safetensors (150 B)")
               for e in growing.evidence)  # fmt: skip
    assert any(e.startswith("free under") for e in growing.evidence)
    assert any(e.startswith("mount: /") for e in growing.evidence)
    assert checks["model.ok.bin"].status == "pass"
    refused = checks["model./etc/passwd"]
    assert refused.status == "fail" and "outside the model roots" in refused.summary


async def test_missing_empty_and_unreadable_model_files(config: Config, tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "empty.bin").write_bytes(b"")
    (root / "dir").mkdir()
    cfg = msgspec.structs.replace(
        config,
        ops=OpsSettings(
            model_roots=[str(root)], model_files=["gone.bin", "empty.bin", "dir", "../escape"]
        ),
    )
    report = await run_doctor(None, cfg, [], probes=probes())
    checks = by_name(report)
    assert "does not exist" in checks["model.gone.bin"].summary
    assert "is empty" in checks["model.empty.bin"].summary
    assert "not a regular file" in checks["model.dir"].summary
    assert "outside the model roots" in checks["model.../escape"].summary


def test_restart_loop_names_pids_and_their_errors() -> None:
    def line(ts: float, pid: int, msg: str, **kw: object) -> str:
        return json.dumps({"ts": ts, "level": kw.pop("level", "info"), "logger": "gpuroute.x",
                           "msg": msg, "pid": pid, **kw})  # fmt: skip

    lines = [
        line(10, 1, "started", service="advisor"),  # older than ten minutes: not counted
        line(1000, 11, "started", service="advisor"),
        line(1001, 11, "background task died", level="error", error="KeyError('x')"),
        line(1100, 12, "started", service="advisor"),
        line(1200, 13, "started", service="advisor"),
        "not json {",
        line(1201, 13, "background task died", level="error", error="KeyError('y')"),
        line(1200, 20, "started", service="store"),
    ]
    checks = {c.name: c for c in restart_loops(lines, now=1300, services=["store", "budget"])}
    loop = checks["restarts.advisor"]
    assert loop.status == "fail" and "3 pids" in loop.summary
    assert loop.evidence[0] == "pids 11, 12, 13"
    assert "pid 13: background task died KeyError('y')" in loop.evidence
    assert "gpuroute@advisor" in loop.next_step
    assert checks["restarts.store"].status == "pass"
    assert checks["restarts.budget"].status == "pass"


def test_unsafe_gpu_says_the_advisor_falls_back_to_cpu() -> None:
    hot = gpu.GpuState(
        index=0,
        name="RTX",
        memory_total_mib=1000,
        memory_used_mib=990,
        temperature_c=91,
        ecc_uncorrected=2,
        processes=["77 (900 MiB)"],
    )
    fine = gpu.GpuState(
        index=1,
        name="RTX",
        memory_total_mib=1000,
        memory_used_mib=10,
        temperature_c=40,
        ecc_uncorrected=0,
    )
    checks = gpu.gpu_checks(gpu.GpuProbe(gpus=[hot, fine], driver="550"), OpsSettings())
    assert checks[0].status == "warn"
    for part in ("2 uncorrected ECC", "91 C", "VRAM full: 990 of 1000", "falls back to CPU"):
        assert part in checks[0].summary
    assert "processes holding VRAM: 77 (900 MiB)" in checks[0].evidence
    assert checks[1].status == "pass"


def test_nvml_probe_on_this_machine_never_raises() -> None:
    found = gpu.probe()
    assert found.gpus or found.reason


def test_cli_exits_1_naming_nats_when_it_is_down(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "doctor", "--json", "--nats-url",
         "nats://127.0.0.1:1", "--data-dir", str(tmp_path)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is False
    assert report["checks"][0]["name"] == "nats.reachable"
    assert report["checks"][0]["status"] == "fail"


async def test_doctor_logs_in_as_the_gateway_under_up_permissions(
    tmp_path: Path,
) -> None:
    """The gateway's NATS user may do every read doctor needs (no permission error)."""
    from services.runtime.credentials import ensure_credentials, write_server_conf

    creds = ensure_credentials(tmp_path / "data")
    auth = write_server_conf(tmp_path / "nats", creds.values())
    server = EmbeddedNats(tmp_path / "nats", port=0, config_file=auth)
    server.start()
    try:
        store_creds = creds["store"]
        nc = await nats.connect(server.url, user=store_creds.user, password=store_creds.password)
        js = nc.jetstream()
        from services.runtime.bus import Bus

        bus = await Bus.connect(server.url, source="store", credentials=store_creds)
        await bus.ensure_streams()
        await bus.close()
        await js.add_consumer("GPUROUTE", durable_name="store")
        await nc.close()
        cfg = load_config(data_dir=str(tmp_path / "data"))
        cfg = ops_config(cfg, server)
        report = await doctor(cfg, server.url, creds["gateway"], [], probes())
        checks = by_name(report)
        for name in ("nats.jetstream", "nats.stream", "store.lag", "store.dead_letters"):
            assert checks[name].status == "pass", checks[name]
    finally:
        server.stop()


def _events_db(path: Path, rows: list[tuple[float, int]]) -> None:
    """events.db with the store's schema: one event per (ts, body size)."""
    import sqlite3

    from services.store.eventlog import SCHEMA

    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO events (id, type, key, ts, body) VALUES (?, 't', 'k', ?, ?)",
                         [(str(i), ts, b"x" * n) for i, (ts, n) in enumerate(rows)])  # fmt: skip


async def test_event_log_growth_per_day_warns_over_the_threshold(tmp_path: Path) -> None:
    """events.db growth is its bytes over the days between its first and last event."""
    db = tmp_path / "events.db"
    _events_db(db, [(1_000_000.0, 10), (1_000_000.0 + 2 * DAY_S, 4 << 20)])
    calm, = await growth_checks(db, None, None, 1024.0, tmp_path)  # fmt: skip
    assert calm.status == "pass" and "over 2.0 days" in calm.summary, calm
    fast, = await growth_checks(db, None, None, 1.0, tmp_path)  # fmt: skip
    assert fast.status == "warn" and "MiB/day (over 1)" in fast.summary, fast
    assert any("full in" in e for e in fast.evidence)
    assert "stream_max_age_s" in fast.next_step


async def test_young_or_absent_logs_pass_saying_they_cannot_tell(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    absent, stream = await growth_checks(db, 1 << 20, (5.0, 65.0), 1.0, tmp_path)
    assert absent.status == stream.status == "pass"
    assert "too young" in absent.summary and "too young" in stream.summary
    _events_db(db, [(1.0, 10), (2.0, 10)])
    young, = await growth_checks(db, None, None, 1.0, tmp_path)  # fmt: skip
    assert young.status == "pass" and "too young" in young.summary


async def test_jetstream_growth_reads_the_streams_first_and_last_times(
    config: Config, nats_server: EmbeddedNats, store: object, bus: Bus
) -> None:
    """nats-py's StreamInfo drops first_ts/last_ts: doctor reads them itself."""
    for event in lifecycle(bus, "job-growth"):
        await bus.publish(event)
    seen = await observe(bus.nc, 0.1)
    assert seen.stream_span is not None
    first, last = seen.stream_span
    assert 0 <= last - first < 60 and abs(last - time.time()) < 60
    report = await doctor(ops_config(config, nats_server), nats_server.url, None, ["store"],
                          probes())  # fmt: skip
    checks = by_name(report)
    assert checks["growth.jetstream"].status == "pass"
    assert "event stream" in checks["growth.jetstream"].summary
    assert checks["growth.events_db"].status == "pass"
