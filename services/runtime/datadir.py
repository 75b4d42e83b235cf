"""One gpuroute per data directory.

The embedded nats-server and the store own files in the data directory
(JetStream's store, ``events.db``); two processes sharing them would write
each other's events. :class:`DataDirLock` holds an exclusive ``flock`` on
``<data-dir>/gpuroute.lock`` (released by the kernel if the process dies) and
names the pid that holds it when it is taken.

The data directory is private: :func:`private_dir` makes it (and JetStream's
folder) 0700, :func:`write_private` writes a file 0600 (credentials, the NATS
URL); ``events.db`` and the log are created 0600 where they are opened.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from services.runtime.errors import GpurouteError


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700: only its owner may list
    or open what is inside, whatever mode an older version created it with."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it is missing, else make it
    0600: for files others open by name (SQLite, the log handler), which
    would create them with the umask's mode."""
    path = Path(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    path.chmod(0o600)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    os.replace(tmp, path)


class DataDirInUse(GpurouteError):
    pass


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "gpuroute.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        private_dir(self.path.parent)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise DataDirInUse(
                f"data directory {self.path.parent} is in use by another gpuroute "
                f"(pid {holder}); stop it or pass another --data-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
