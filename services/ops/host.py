"""Checks of this node's processes and memory: restart loops from gpuroute.log,
RAM and VRAM headroom against the budget limits.

A restart loop is what a process supervisor (systemd, supervisord) hides: a
service that dies and is started again keeps answering between deaths. Every
log line carries the pid, and every service logs ``started`` with its name,
so the log alone shows a service that started under a new pid
``LOOP_STARTS`` times within ``LOOP_WINDOW_S``: doctor reports those pids and
the last error lines they logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from schemas.budget import BudgetLimits
from services.ops.gpu import GpuProbe
from services.ops.report import Check, failed, passed, warned

LOOP_STARTS = 3
LOOP_WINDOW_S = 600.0
TAIL_BYTES = 4 << 20
"""How much of the end of gpuroute.log is read (bounds doctor's time and memory)."""
ERROR_LINES = 5

_line = msgspec.json.Decoder(dict[str, Any])


def log_tail(path: Path, max_bytes: int = TAIL_BYTES) -> list[str]:
    """The last whole lines within ``max_bytes`` of ``path`` (none when it is absent)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > max_bytes else lines


def _records(lines: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            record = _line.decode(line)
        except msgspec.DecodeError:
            continue  # a line cut by a crash, or not ours
        if isinstance(record.get("ts"), (int, float)):
            out.append(record)
    return out


def restart_loops(lines: Iterable[str], now: float, services: Iterable[str]) -> list[Check]:
    """One check per service in ``services`` (and any other that logged ``started``):
    fail when it started under ``LOOP_STARTS`` new pids within ``LOOP_WINDOW_S``."""
    records = _records(lines)
    starts: dict[str, list[tuple[float, int]]] = {}
    for r in records:
        if r.get("msg") == "started" and isinstance(r.get("service"), str):
            if isinstance(r.get("pid"), int) and now - r["ts"] <= LOOP_WINDOW_S:
                starts.setdefault(r["service"], []).append((r["ts"], r["pid"]))
    out = []
    for name in dict.fromkeys([*services, *sorted(starts)]):
        pids = list(dict.fromkeys(pid for _, pid in starts.get(name, [])))
        label = f"restarts.{name}"
        if len(pids) < LOOP_STARTS:
            out.append(passed(label, f"{len(pids)} start(s) in the last "
                              f"{LOOP_WINDOW_S / 60:g} minutes"))  # fmt: skip
            continue
        errors = [r for r in records if r.get("pid") in pids
                  and r.get("level") in ("error", "critical")][-ERROR_LINES:]  # fmt: skip
        evidence = [f"pids {', '.join(map(str, pids))}"] + [
            f"pid {r['pid']}: {r.get('msg')} {r.get('error', '')}".rstrip() for r in errors
        ]
        out.append(failed(label, f"restart loop: started under {len(pids)} pids in "
                          f"{LOOP_WINDOW_S / 60:g} minutes",
                          f"read the errors below, fix their cause, then restart only it: "
                          f"systemctl restart gpuroute@{name} (or gpuroute serve {name})",
                          evidence))  # fmt: skip
    return out


def memory_headroom(
    limits: BudgetLimits, ram_available_mib: int | None, gpus: GpuProbe
) -> list[Check]:
    """RAM and VRAM free now against what the budget lets jobs take."""
    out = []
    if ram_available_mib is None:
        out.append(warned("memory.ram", "cannot read free RAM", "check psutil is installed"))
    elif ram_available_mib < limits.max_mem_mb:
        out.append(warned("memory.ram", f"{ram_available_mib} MiB RAM available, the budget "
                          f"allows jobs {limits.max_mem_mb} MiB",
                          "lower max_mem_mb (POST /api/perf/budgets/apply) or stop what "
                          "else uses RAM"))  # fmt: skip
    else:
        out.append(passed("memory.ram", f"{ram_available_mib} MiB RAM available, budget "
                          f"{limits.max_mem_mb} MiB"))  # fmt: skip
    free = [g.memory_total_mib - g.memory_used_mib for g in gpus.gpus
            if g.memory_total_mib is not None and g.memory_used_mib is not None]  # fmt: skip
    if free and limits.max_vram_mb and max(free) < limits.max_vram_mb:
        out.append(warned("memory.vram", f"at most {max(free)} MiB VRAM free on one GPU, "
                          f"the budget allows jobs {limits.max_vram_mb} MiB",
                          "lower max_vram_mb (POST /api/perf/budgets/apply) or stop what "
                          "holds VRAM (see gpu.*)"))  # fmt: skip
    elif free:
        out.append(passed("memory.vram", f"{max(free)} MiB VRAM free, budget "
                          f"{limits.max_vram_mb} MiB"))  # fmt: skip
    return out
