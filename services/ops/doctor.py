"""``gpuroute doctor``: every check, in triage order, as one :class:`DoctorReport`.

Order: NATS and JetStream (nothing else works without them), the store and
its lag, each service (heartbeat, ``$SRV``, faults, restart loops), then the
node (GPU, memory, disk, model files, worker endpoints). With no NATS
connection (``nc`` None: it could not be reached) the NATS-side checks are
fails that say so, and the node checks still run. Side effects come in
through :class:`Probes` so tests replace the clock, the wait, NVML and RAM.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from nats.aio.client import Client

from schemas.budget import BudgetLimits
from schemas.ops_settings import OpsSettings, WorkerEndpoint
from services.ops import files, gpu, growth, host
from services.ops.cluster import Observed, observe
from services.ops.report import Check, DoctorReport, failed, passed, warned
from services.runtime.config import Config

LAG_WARN = 1000
"""Events the store has not yet stored (pending + ack-pending) before it is a warn."""
WORKER_TIMEOUT_S = 3.0


def _ram_available() -> int | None:
    return int(psutil.virtual_memory().available) >> 20


@dataclass
class Probes:
    """The side effects of doctor, replaceable in tests."""

    now: Callable[[], float] = time.time
    sleep: files.Sleep = asyncio.sleep
    nvml: Any = None
    ram_available_mib: Callable[[], int | None] = _ram_available
    gpu: Callable[[Any], gpu.GpuProbe] = field(default=gpu.probe)


def _restart_hint(service: str) -> str:
    return (f"restart only it: systemctl restart gpuroute@{service} (or gpuroute serve "
            f"{service}); its errors: grep '\"pid\"' <data-dir>/gpuroute.log")  # fmt: skip


def sync_interval(conf: Path) -> str | None:
    """``sync_interval`` of a nats-server config file (None: absent, unreadable)."""
    try:
        text = conf.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(r"sync_interval\s*[:=]\s*\"?([A-Za-z0-9.]+)", text)
    return found.group(1) if found else None


def nats_checks(seen: Observed | None, url: str, why: str, conf: Path | None) -> list[Check]:
    down = "start it: gpuroute up (embedded), or systemctl start gpuroute-nats"
    if seen is None:
        return [failed("nats.reachable", f"unreachable at {url}: {why}", down)]
    out = [passed("nats.reachable", f"{url}, nats-server {seen.server_version}")]
    if seen.account is None:
        why_js = seen.errors.get("jetstream")
        out.append(failed("nats.jetstream", f"JetStream unreachable: {why_js}",
                          "run nats-server with JetStream (-js; gpuroute up does)"))  # fmt: skip
    else:
        used = seen.account.get("storage", 0)
        out.append(passed("nats.jetstream", f"enabled, {used >> 20} MiB stored"))
    if seen.stream is None:
        out.append(
            failed(
                "nats.stream",
                f"event stream unreachable: {seen.errors.get('stream')}",
                "start the store (gpuroute serve store): it creates the streams",
            )
        )
    else:
        st, cfg = seen.stream.state, seen.stream.config
        out.append(passed("nats.stream", f"{cfg.name}: {st.messages} events, {st.bytes >> 20} MiB, "
                          f"{cfg.num_replicas} replica(s)"))  # fmt: skip
    sync = sync_interval(conf) if conf is not None else None
    if sync == "always":
        out.append(passed("nats.sync_interval", "always: an acknowledged event is on disk"))
    else:
        shown = sync or f"unknown (no sync_interval in {conf})"
        out.append(warned("nats.sync_interval", f"{shown}: an OS crash can lose events "
                          "JetStream already acknowledged",
                          "set jetstream { sync_interval: always } in the server config, or "
                          "[ops] nats_conf to the config doctor should read"))  # fmt: skip
    return out


def store_checks(seen: Observed | None, db: Path) -> list[Check]:
    if seen is None:
        return [failed("store.service", "unreachable: NATS is down", "fix nats.reachable first")]
    out = []
    if seen.store is None:
        out.append(failed("store.service", f"unreachable: no answer on gpuroute.store.stats "
                          f"({seen.errors.get('store')})", _restart_hint("store")))  # fmt: skip
    elif seen.store.problems:
        out.append(failed("store.service", "; ".join(seen.store.problems),
                          "read docs/runbook.md for each; acknowledge a stream reset with "
                          "POST /api/store/acknowledge"))  # fmt: skip
    else:
        s = seen.store
        out.append(passed("store.service", f"{s.count} events stored, last position {s.last_seq}"))
    if seen.consumer is None:
        out.append(
            failed(
                "store.lag",
                f"the store's consumer is unreachable ({seen.errors.get('consumer')})",
                _restart_hint("store"),
            )
        )
    else:
        c = seen.consumer
        lag = f"{c.num_pending} pending, {c.num_ack_pending} waiting for the store's ack"
        if (c.num_pending or 0) + (c.num_ack_pending or 0) > LAG_WARN:
            out.append(warned("store.lag", lag, "the store is behind: check disk (disk.*) and "
                              "its faults; it catches up by itself"))  # fmt: skip
        else:
            out.append(passed("store.lag", lag))
    dead = seen.dlq.state.messages if seen.dlq is not None else None
    if dead:
        out.append(warned("store.dead_letters", f"{dead} dead letters in the DLQ stream",
                          "read their reasons: gpuroute tail with --nats-url, subject dlq.>; "
                          "fix the publisher"))  # fmt: skip
    else:
        out.append(passed("store.dead_letters", f"{dead or 0} dead letters"))
    return out


def service_checks(seen: Observed | None, expected: list[str]) -> list[Check]:
    out = []
    for name in expected:
        label = f"service.{name}"
        if seen is None:
            out.append(failed(label, "unreachable: NATS is down", "fix nats.reachable first"))
            continue
        beats, srv = seen.heartbeats.get(name, []), seen.srv.get(name, [])
        if not beats:
            out.append(failed(label, "no heartbeat: not running, or cannot reach NATS",
                              _restart_hint(name)))  # fmt: skip
            continue
        evidence = [f"pid {b.pid}, up {b.uptime_s:.0f}s, version {b.version}" for b in beats]
        faults = [f for b in beats for f in b.faults]
        if faults:
            out.append(failed(label, "dead background task: " + "; ".join(faults),
                              _restart_hint(name), evidence))  # fmt: skip
        elif not srv:
            out.append(failed(label, "heartbeat fresh but $SRV does not answer",
                              _restart_hint(name), evidence))  # fmt: skip
        else:
            out.append(passed(label, f"{len(beats)} instance(s), heartbeat fresh, $SRV answers",
                              evidence))  # fmt: skip
    return out


async def worker_check(session: aiohttp.ClientSession, w: WorkerEndpoint) -> Check:
    label, url = f"worker.{w.name}", w.health_url
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT_S)) as r:
            if r.status == 200:
                return passed(label, f"{url}: 200")
            body = (await r.content.read(300)).decode("utf-8", "replace")
            return failed(
                label,
                f"{url}: HTTP {r.status} {body}".rstrip(),
                f"read the {w.kind} server's log; restart it",
            )
    except (aiohttp.ClientError, TimeoutError) as e:
        return failed(
            label,
            f"{url}: unreachable ({type(e).__name__}: {e})",
            f"start the {w.kind} server, or fix its url in [ops] workers",
        )


async def run_doctor(
    nc: Client | None, config: Config, expected: list[str], *, why: str = "",
    url: str = "", probes: Probes | None = None,
) -> DoctorReport:  # fmt: skip
    """Every check; ``nc`` None means NATS could not be reached (``why``)."""
    p = probes or Probes()
    ops: OpsSettings = config.ops
    seen = await observe(nc, ops.listen_s) if nc is not None else None
    conf = Path(ops.nats_conf) if ops.nats_conf else config.data_path / "nats" / "server.conf"
    checks = nats_checks(seen, url or str(config.nats.url), why, conf)
    checks += store_checks(seen, config.events_db)
    checks.append(await files.event_store(config.events_db))
    checks += await growth.growth_checks(
        config.events_db, seen.stream.state.bytes if seen and seen.stream else None,
        seen.stream_span if seen else None, ops.growth_warn_mb_per_day,
        config.data_path / "nats")  # fmt: skip
    checks += service_checks(seen, expected)
    log = host.log_tail(config.data_path / "gpuroute.log")
    checks += host.restart_loops(log, p.now(), expected)
    found = await asyncio.to_thread(p.gpu, p.nvml)
    checks += gpu.gpu_checks(found, ops)
    limits: BudgetLimits = seen.budget.limits if seen and seen.budget else config.budget.limits
    checks += host.memory_headroom(limits, p.ram_available_mib(), found)
    folders = {"data": config.data_path} | {f"models{i}": Path(r)
                                            for i, r in enumerate(ops.model_roots)}  # fmt: skip
    checks += files.disk_free(folders, ops.min_free_mb)
    checks += files.warn_no_models(ops) + await files.model_files(ops, p.sleep)
    if ops.workers:
        async with aiohttp.ClientSession() as session:
            checks += await asyncio.gather(*(worker_check(session, w) for w in ops.workers))
    return DoctorReport.of(checks)
