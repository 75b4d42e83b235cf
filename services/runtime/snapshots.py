"""Snapshots of a projection's state: its position in the log, saved to a file.

A snapshot is one file per projection and code version,
``<data-dir>/snapshots/<name>.v<version>.snapshot``: a header line (JSON: the
projection's name and code version, the digest of its initial state, the
position folded up to, the id of the event at that position, and the sha256
and length of the body) and the body, the state as ``to_builtins`` gives it,
encoded as JSON. The initial state's digest stands for how the projection was
built: a projection made with other parameters (the advisor's node) starts
from another initial state and does not load the snapshot.

A snapshot is only a shortcut: the log is the truth. So nothing about a
snapshot can stop a start. :meth:`Snapshots.load` returns None, and says why
in the log, for a missing file, another code version or initial state, a header or body that
does not decode, a body whose digest or length does not match (a torn write
after a power cut), or a state ``from_builtins`` refuses; the follower then
rebuilds from position 0.

Writes replace the file atomically (a temporary file in the same directory,
then ``os.replace``), mode 0600 in a 0700 directory, without fsync: a
snapshot lost or torn by a crash fails its digest and costs one rebuild,
while an fsync per save would cost every save on a busy disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from schemas import limits
from services.runtime.logs import get_logger

FORMAT = 1
"""Version of the file layout (not of a projection's code)."""
MAX_HEADER_BYTES = 4096

log = get_logger("snapshots")


class Header(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: int
    projection: str
    version: int
    initial: str
    """sha256 of the projection's initial state (``projection.state_hash``)."""
    position: limits.Position
    event_id: str | None
    """Id of the event at ``position``: the follower checks the store still holds
    it there, so a snapshot never outlives the log it was folded from."""
    length: int
    sha256: str


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    event_id: str | None
    state: Any
    """The state as builtins (``Projection.from_builtins`` makes it a state)."""


_header = msgspec.json.Decoder(Header)


class Snapshots:
    """The snapshot files of one data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str, version: int) -> Path:
        return self.directory / f"{name}.v{version}.snapshot"

    def save(
        self,
        name: str,
        version: int,
        initial: str,
        position: int,
        event_id: str | None,
        state: Any,
    ) -> int:
        """Write ``state`` (builtins) folded up to ``position``; returns the bytes
        written. Raises ``OSError`` (the caller logs it and goes on)."""
        body = msgspec.json.encode(state)
        header = Header(
            format=FORMAT, projection=name, version=version, initial=initial, position=position,
            event_id=event_id, length=len(body), sha256=hashlib.sha256(body).hexdigest(),
        )  # fmt: skip
        data = msgspec.json.encode(header) + b"\n" + body
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.path(name, version)
        # a name of its own: a replica or an overlapping save never writes into it
        fd, name_ = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name_)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return len(data)

    def load(self, name: str, version: int, initial: str) -> Snapshot | None:
        """The snapshot of ``name`` at code ``version``, or None (logged) when there
        is none or it cannot be trusted."""
        path = self.path(name, version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            others = sorted(p.name for p in self.directory.glob(f"{name}.v*.snapshot"))
            if others:
                log.info(
                    "no snapshot of this code version: rebuilding from the log",
                    extra={"fields": {"projection": name, "version": version, "found": others}},
                )
            return None
        except OSError as e:
            return _refused(path, f"cannot read: {e}")
        head, newline, body = data.partition(b"\n")
        if not newline or len(head) > MAX_HEADER_BYTES:
            return _refused(path, "no header line")
        try:
            header = limits.decode(_header, head, what="snapshot header")
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return _refused(path, f"bad header: {e}")
        expected = (FORMAT, name, version, initial)
        found = (header.format, header.projection, header.version, header.initial)
        if found != expected:
            return _refused(path, f"header says format/projection/version/initial {found}")
        if len(body) != header.length or hashlib.sha256(body).hexdigest() != header.sha256:
            return _refused(path, f"body of {len(body)} bytes does not match its digest")
        try:
            state = msgspec.json.decode(body)
        except msgspec.DecodeError as e:
            return _refused(path, f"body is not JSON: {e}")
        return Snapshot(position=header.position, event_id=header.event_id, state=state)

    def discard(self, name: str, version: int, reason: str) -> None:
        """Remove a snapshot found wrong only against the log (logged)."""
        path = self.path(name, version)
        log.warning(
            "snapshot discarded: rebuilding from the log",
            extra={"fields": {"path": str(path), "reason": reason}},
        )
        with contextlib.suppress(OSError):
            path.unlink()


def _refused(path: Path, reason: str) -> Snapshot | None:
    log.warning(
        "snapshot not used: rebuilding from the log",
        extra={"fields": {"path": str(path), "reason": " ".join(reason.split())}},
    )
    return None
