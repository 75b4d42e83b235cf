"""Saving an attempt's outputs under ``run.workdir / "artifacts"``.

Every executor writes its outputs through here, so every artifact has a safe
file name (no separators, no dot-files, unique within the attempt), mode 0600,
a size bound and a SHA-256. The scheduler writes the provenance sidecar
(``<name>.json``) beside each; an executor never names a file ``*.json`` that
would collide with one (a colliding name gets a numbered form).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from services.scheduler.errors import SchedulerError

from .base import Artifact, Run

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 128


class ArtifactTooLarge(SchedulerError):
    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"artifact {name!r} is larger than the limit of {limit} bytes")


def folder(run: Run) -> Path:
    path = run.workdir / "artifacts"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def safe_name(wanted: str, taken: set[str]) -> str:
    """A file name derived from ``wanted`` (any text a far side sent) that is
    safe to create in the artifacts folder and not in ``taken``."""
    base = _UNSAFE.sub("_", wanted.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    base = base[-MAX_NAME:] or "output"
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    name, n = base, 1
    while name in taken or (name.endswith(".json") and name[:-5] in taken):
        n += 1
        name = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
    taken.add(name)
    return name


async def save_stream(
    run: Run,
    name: str,
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    content_type: str | None = None,
) -> Artifact:
    """Write ``chunks`` to ``artifacts/<name>`` (mode 0600); over ``limit`` bytes the
    partial file is removed and :class:`ArtifactTooLarge` raised."""
    path = folder(run) / name
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ArtifactTooLarge(name, limit)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Artifact(name, path, size, content_type or guess_type(name), digest.hexdigest())


def describe(path: Path) -> Artifact:
    """An :class:`Artifact` for a file already in the artifacts folder."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Artifact(path.name, path, path.stat().st_size, guess_type(path.name), digest.hexdigest())


def collect(run: Run, *, limit: int = 256) -> tuple[Artifact, ...]:
    """The regular files a program left in the artifacts folder (at most ``limit``,
    by name; links and folders are skipped: a link could point anywhere)."""
    path = run.workdir / "artifacts"
    if not path.is_dir():
        return ()
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.is_symlink())
    return tuple(describe(p) for p in files[:limit] if not p.name.endswith(".json"))


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
