"""Checks of files on this node: model files, free disk, the event store's file.

Pure of gpuroute's services (nothing here needs NATS), so they run when
everything else is down. The wait between the two size checks of a model
file comes in as ``sleep`` so tests do not wait.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from schemas.ops_settings import OpsSettings
from services.ops.report import Check, failed, passed

Sleep = Callable[[float], Awaitable[None]]
MiB = 1 << 20
LISTING_MAX = 20


def _mount(path: Path) -> Path:
    p = path if path.exists() else path.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def _where(path: Path) -> list[str]:
    """What an operator needs to see a file being copied: its folder's listing,
    the free space there and the mount it is on."""
    folder = path.parent
    out = []
    try:
        entries = sorted(folder.iterdir())[:LISTING_MAX]
        out.append(f"ls {folder}: " + ", ".join(
            f"{e.name} ({e.lstat().st_size} B)" for e in entries))  # fmt: skip
    except OSError as e:
        out.append(f"ls {folder}: {e.strerror}")
    try:
        out.append(f"free under {folder}: {shutil.disk_usage(folder).free // MiB} MiB")
    except OSError as e:
        out.append(f"free under {folder}: {e.strerror}")
    out.append(f"mount: {_mount(path)}")
    return out


def resolve_model(settings: OpsSettings, name: str) -> tuple[Path, str | None]:
    """The model file's real path, and why it is refused (outside every root)."""
    roots = [Path(r).resolve() for r in settings.model_roots]
    raw = Path(name)
    if not raw.is_absolute():
        if not roots:
            return raw, "a relative model path needs [ops] model_roots"
        raw = roots[0] / raw
    real = raw.resolve()
    if not any(real.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots) or "none configured"
        return real, f"outside the model roots ({allowed})"
    return real, None


def _first_look(path: Path) -> tuple[int | None, str | None]:
    """The size, or what is wrong (absent, not a regular file, unreadable, empty)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, "does not exist"
    except OSError as e:
        return None, f"cannot stat: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return None, "is not a regular file"
    if not os.access(path, os.R_OK):
        return None, "is not readable by this user"
    if st.st_size == 0:
        return None, "is empty (0 bytes)"
    return st.st_size, None


async def model_files(settings: OpsSettings, sleep: Sleep = asyncio.sleep) -> list[Check]:
    """One check per configured model file; sizes are compared across one
    ``settle_s`` wait shared by every file."""
    checks: dict[str, Check] = {}
    first: dict[str, tuple[Path, int]] = {}
    for name in settings.model_files:
        label = f"model.{name}"
        path, refused = resolve_model(settings, name)
        if refused:
            checks[name] = failed(label, f"refused: {path} is {refused}",
                                  "move the file under a model root, or add its folder "
                                  "to [ops] model_roots")  # fmt: skip
            continue
        size, problem = _first_look(path)
        if size is None:
            checks[name] = failed(
                label,
                f"{path} {problem}",
                "restore the file (re-download or re-sync it)",
                _where(path),
            )
        else:
            first[name] = (path, size)
    if first:
        await sleep(settings.settle_s)
    for name, (path, size) in first.items():
        label = f"model.{name}"
        again, problem = _first_look(path)
        if again is None:
            checks[name] = failed(label, f"{path} {problem} (it was {size} B a moment ago)",
                                  "wait for whatever is replacing it, then run gpuroute doctor "
                                  "again", _where(path))  # fmt: skip
        elif again != size:
            checks[name] = failed(
                label,
                f"{path} is still changing: {size} B, then {again} B "
                f"{settings.settle_s:g}s later",
                "wait for the copy or sync to finish (do not load it yet), then run "
                "gpuroute doctor again", _where(path))  # fmt: skip
        else:
            checks[name] = passed(label, f"{path}: {size} B, stable over {settings.settle_s:g}s")
    return [checks[n] for n in settings.model_files]


def disk_free(folders: dict[str, Path], min_free_mb: int) -> list[Check]:
    """Free space under each folder (label -> path)."""
    out = []
    for label, folder in folders.items():
        name = f"disk.{label}"
        try:
            usage = shutil.disk_usage(folder)
        except OSError as e:
            out.append(failed(name, f"cannot read free space of {folder}: {e.strerror}",
                              f"create {folder}, or fix its path in the config"))  # fmt: skip
            continue
        free = usage.free // MiB
        text = f"{free} MiB free of {usage.total // MiB} MiB under {folder}"
        if free < min_free_mb:
            out.append(failed(name, text + f" (less than {min_free_mb} MiB)",
                              f"free space on {_mount(folder)} (old logs, models, "
                              "snapshots)"))  # fmt: skip
        else:
            out.append(passed(name, text))
    return out


def _quick_check(db: Path) -> str:
    uri = f"file:{db}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=5) as conn:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    return "; ".join(str(r[0]) for r in rows[:10])


def file_size(path: Path) -> int:
    """Bytes of ``path`` and its ``-wal``/``-shm`` files (0 for those absent)."""
    total = 0
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


async def event_store(db: Path) -> Check:
    """``PRAGMA quick_check`` of events.db, read-only (safe beside a running store)."""
    name = "store.file"
    if not await asyncio.to_thread(db.exists):
        return failed(
            name,
            f"{db} does not exist",
            "start the store (gpuroute up, or gpuroute serve store): it creates it",
        )
    try:
        result = await asyncio.to_thread(_quick_check, db)
    except sqlite3.Error as e:
        return failed(name, f"cannot check {db}: {e}",
                      "stop the store, copy events.db aside, and run sqlite3 events.db "
                      "'PRAGMA integrity_check'")  # fmt: skip
    size = f"{file_size(db) // MiB} MiB with its WAL"
    if result != "ok":
        return failed(name, f"quick_check of {db} says: {result[:500]}",
                      "stop the store, keep a copy of events.db, and rebuild it from "
                      "JetStream (docs/runbook.md, 'event store damaged')", [size])  # fmt: skip
    return passed(name, f"{db}: quick_check ok, {size}")


def warn_no_models(settings: OpsSettings) -> list[Check]:
    if settings.model_files:
        return []
    return [passed("model.files", "no model files configured ([ops] model_files): none to check")]
