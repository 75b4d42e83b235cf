"""Each service as its own process, as ops/supervisord.conf and the systemd
units run them: ``gpuroute serve NAME --creds`` against one nats-server that
requires the logins ``gpuroute up`` would make. While a scheduler publishes a
steady flow of jobs, every service in turn is SIGKILLed and started again; it
comes back (rebuilding its state from the log before it says it runs) and, at
the end, every acknowledged job is stored exactly once and advised exactly
once, the ones submitted while the store or the advisor was dead included
(issue 15, "Each service on its own")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import cli
from services.runtime.bus import Bus
from services.runtime.credentials import credentials_path, ensure_credentials, write_server_conf
from services.runtime.natsserver import EmbeddedNats
from tests.ops.test_cluster import Flow, _free_port
from tests.support import gpuroute, poll

RUNNING = "gpuroute: running"


class Fleet:
    """One ``gpuroute serve NAME`` process per service; each one's output
    appended to ``<folder>/NAME.out``."""

    def __init__(self, url: str, data: Path, folder: Path) -> None:
        self.url, self.data, self.folder = url, data, folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with open(self.folder / f"{name}.out", "ab") as out:
            self.procs[name] = gpuroute(
                "serve", name, "--nats-url", self.url, "--data-dir", str(self.data),
                "--creds", str(credentials_path(self.data, name)), "--http-port", "0",
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    def started(self, name: str) -> int:
        """How many times ``name`` said it runs (its state rebuilt)."""
        path = self.folder / f"{name}.out"
        return path.read_text(errors="replace").count(RUNNING) if path.exists() else 0

    async def wait_running(self, name: str, times: int) -> None:
        def ready() -> bool:
            proc = self.procs[name]
            assert proc.poll() is None, (self.folder / f"{name}.out").read_text()[-2000:]
            return self.started(name) >= times

        await poll(ready, timeout=30, interval=0.05)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    data = tmp_path / "data"
    creds = ensure_credentials(data)
    conf = write_server_conf(tmp_path / "nats", creds.values())
    server = EmbeddedNats(tmp_path / "nats", port=0, config_file=conf)
    server.start()
    f = Fleet(server.url, data, tmp_path)
    try:
        yield f
    finally:
        f.stop_all()
        server.stop()


def _stored(db: Path) -> tuple[Counter[str], Counter[str]]:
    """Stored job.submitted ids, and the job.submitted ids job.advised answer."""
    submitted: Counter[str] = Counter()
    advised: Counter[str] = Counter()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for kind, body in conn.execute(
            "SELECT type, body FROM events WHERE type IN ('job.submitted', 'job.advised')"
        ):
            event = json.loads(body)
            if kind == "job.submitted":
                submitted[event["id"]] += 1
            else:
                advised[event["causation_id"]] += 1
    return submitted, advised


def test_every_service_without_nats_exits_1_with_one_line(tmp_path: Path) -> None:
    """Each ``serve NAME``, given a cluster's URLs none of which listens, says
    so in one line after its retry window and exits 1 (run side by side)."""
    urls = ",".join(f"nats://127.0.0.1:{_free_port()}" for _ in range(3))
    procs = {}
    for name in cli.SERVICES:
        procs[name] = gpuroute(
            "serve", name, "--nats-url", urls, "--data-dir", str(tmp_path / name),
            "--http-port", "0", stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=30)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 1, (name, err)
        assert lines[-1].startswith(f"gpuroute: error: cannot connect to NATS at {urls}"), name
        assert "Traceback" not in err.decode(), name


@pytest.mark.timeout(90)  # ~35 s measured on 2 shared cores; headroom for a loaded machine
async def test_each_service_killed_in_turn_rebuilds_and_loses_nothing(fleet: Fleet) -> None:
    names = list(cli.SERVICES)  # the store first: it makes the stream
    fleet.start("store")
    await fleet.wait_running("store", 1)
    for name in names[1:]:
        fleet.start(name)
    for name in names[1:]:
        await fleet.wait_running(name, 1)
    publisher = await Bus.connect(
        fleet.url, source="scheduler", credentials=ensure_credentials(fleet.data)["scheduler"]
    )
    flow = Flow(publisher, period_s=0.05)
    flowing = asyncio.create_task(flow.run())
    try:
        await flow.grows_by(5)
        for name in names:
            fleet.kill(name)
            await flow.grows_by(5)  # jobs go on being accepted while it is dead
            fleet.start(name)
            await fleet.wait_running(name, 2)
        await flow.grows_by(5)
        flow.stopping.set()
        await flowing
        acked = set(flow.acked)

        async def answered() -> bool:
            submitted, advised = _stored(fleet.data / "events.db")
            return acked <= set(submitted) and acked <= set(advised)

        await poll(answered, timeout=30)
        submitted, advised = _stored(fleet.data / "events.db")
        assert [i for i in acked if submitted[i] != 1 or advised[i] != 1] == []
        for name in names:  # no restart but the ones this test made
            assert fleet.procs[name].poll() is None, name
            assert fleet.started(name) == 2, name
    finally:
        flow.stopping.set()
        await asyncio.gather(flowing, return_exceptions=True)
        await publisher.close()


def test_supervisord_runs_every_service_as_its_own_program() -> None:
    """One [program:NAME] per service (restart only the failed one), each
    ``gpuroute serve NAME`` with its own login; a new service needs its row."""
    import configparser

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(Path(__file__).resolve().parents[2] / "ops" / "supervisord.conf")
    group = conf["group:gpuroute"]["programs"].split(",")
    assert sorted(group) == sorted(cli.SERVICES)
    for name in cli.SERVICES:
        command = conf[f"program:{name}"]["command"]
        assert f"gpuroute serve {name} " in command
        assert f"--creds /var/lib/gpuroute/.gpuroute/credentials/{name}.toml" in command
        assert conf[f"program:{name}"]["stopsignal"] == "TERM"


def config_rows(t: type, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, type, default as JSON) of every leaf setting of ``t``; the
    table of docs/configuration.md is printed from it:
    ``python -c "from tests.ops.test_per_service import table; print(table())"``."""
    import msgspec
    import msgspec.inspect as mi

    for f in mi.type_info(t).fields:  # type: ignore[attr-defined]
        key = prefix + f.encode_name
        default = f.default
        if default is mi.NODEFAULT:
            default = f.default_factory() if f.default_factory is not mi.NODEFAULT else None
        if isinstance(f.type, mi.StructType) or isinstance(default, msgspec.Struct):
            yield from config_rows(f.type.cls if isinstance(f.type, mi.StructType)
                                   else type(default), key + ".")  # fmt: skip
            continue
        kinds = f.type.types if isinstance(f.type, mi.UnionType) else (f.type,)
        kind = " or ".join(type(k).__name__.removesuffix("Type").lower() for k in kinds)
        yield key, kind, msgspec.json.encode(default).decode()


def table() -> str:
    from services.runtime.config import Config, env_name

    lines = ["| key | type | default | environment |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | `{d}` | `{env_name(k)}` |" for k, t, d in config_rows(Config)]
    return "\n".join(lines)


def test_configuration_doc_lists_every_key() -> None:
    """docs/configuration.md has the row of every key of the Config Structs,
    with its current default (a new key, or a changed default, needs the doc)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [row for row in table().splitlines()[2:] if row not in doc]
    assert missing == [], "regenerate the table of docs/configuration.md:\n" + "\n".join(missing)
