"""One gpuroute per data directory.

The embedded nats-server and the store own files in the data directory
(JetStream's store, ``events.db``); two processes sharing them would write
each other's events. :class:`DataDirLock` holds an exclusive ``flock`` on
``<data-dir>/gpuroute.lock`` (released by the kernel if the process dies) and
names the pid that holds it when it is taken.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from services.runtime.errors import GpurouteError


class DataDirInUse(GpurouteError):
    pass


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "gpuroute.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
