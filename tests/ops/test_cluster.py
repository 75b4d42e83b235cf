"""gpuroute on the 3-node JetStream cluster of ops/nats/: the shipped configs,
moved to loopback ports, with the event stream at 3 replicas. A steady flow
of events goes on while one node is killed and restarted, then while the node
leading the stream is; the store ends with every acknowledged event exactly
once (issue 15, "A NATS cluster")."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest

from schemas.jobs import JobSpec, JobSubmitted
from schemas.subjects import STREAM
from services import cli
from services.runtime.bus import Bus
from services.runtime.config import load_config
from services.runtime.credentials import ensure_credentials, find_credentials, write_server_conf
from services.runtime.errors import GpurouteError
from services.runtime.natsserver import find_binary
from services.runtime.runner import run
from tests.support import poll

OPS_NATS = Path(__file__).resolve().parents[2] / "ops" / "nats"
NODES = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """ops/nats/cluster-N.conf with loopback ports and a store_dir per node
    under ``folder`` (auth.conf beside them); nodes start, stop and restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.client = [_free_port() for _ in range(NODES)]
        route = [_free_port() for _ in range(NODES)]
        routes = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in route)
        self.names: list[str] = []
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * NODES
        for i in range(NODES):
            text = (OPS_NATS / f"cluster-{i + 1}.conf").read_text()
            self.names.append(re.search(r"server_name: (\S+)", text).group(1))  # type: ignore[union-attr]
            text = text.replace("0.0.0.0:4222", f"127.0.0.1:{self.client[i]}")
            text = text.replace("0.0.0.0:6222", f"127.0.0.1:{route[i]}")
            text = text.replace("/var/lib/gpuroute/nats", str(folder / f"n{i + 1}"))
            text = re.sub(r"(?s)routes: \[.*?\]", f"routes: [\n{routes}\n  ]", text)
            (folder / f"n{i + 1}.conf").write_text(text)

    @property
    def urls(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client)

    def start(self, i: int) -> None:
        log = open(self.folder / f"n{i + 1}.log", "ab")  # the child holds its own copy
        self.procs[i] = subprocess.Popen(
            [str(find_binary()), "-c", str(self.folder / f"n{i + 1}.conf")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()

    def kill(self, i: int) -> None:
        proc, self.procs[i] = self.procs[i], None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.kill(i)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Path]]:
    data = tmp_path / "data"
    creds = ensure_credentials(data)  # what `gpuroute up` / `gpuroute creds` make
    write_server_conf(tmp_path / "cluster", creds.values())
    c = Cluster(tmp_path / "cluster")
    for i in range(NODES):
        c.start(i)
    yield c, data
    c.stop_all()


class Flow:
    """Publishes one job.submitted every ``period_s`` as the scheduler; an
    event whose ack did not come is published again with the same id until
    it is acknowledged, so ``acked`` is every event the cluster confirmed."""

    def __init__(self, bus: Bus, period_s: float = 0.02) -> None:
        self.bus = bus
        self.period_s = period_s
        self.acked: list[str] = []
        self.retries = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            event = self.bus.event(JobSubmitted(spec=JobSpec(width=64, height=64)), key=f"c{n}")
            while True:
                try:
                    await self.bus.publish(event, attempts=1)
                    break
                except GpurouteError:
                    self.retries += 1
                    await asyncio.sleep(0.1)
            self.acked.append(event.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.period_s)

    async def grows_by(self, n: int, timeout: float = 20) -> None:
        target = len(self.acked) + n
        await poll(lambda: len(self.acked) >= target, timeout=timeout)


@pytest.fixture
async def gpuroute_on(cluster: tuple[Cluster, Path]) -> AsyncIterator[tuple[Cluster, Path]]:
    """Every service of ``up`` in this process, each given all three URLs
    and logging in as itself; the event stream at 3 replicas."""
    c, data = cluster
    admin = await nats.connect(c.urls.split(","), user="store",
                               password=find_credentials(data, "store").password)  # type: ignore[union-attr]  # fmt: skip
    try:
        await poll(_js_ready(admin), timeout=20)  # the meta group has a leader
    finally:
        await admin.close()
    config = load_config(data_dir=str(data), nats__url=c.urls, http__port=0, heartbeat_s=0.5)
    config.nats.stream_replicas = 3
    config.advisor.ready_timeout_s = 10
    running, stop = asyncio.Event(), asyncio.Event()
    factories = [(n, cli._load(cli.SERVICES[n])) for n in cli.SERVICES]
    task = asyncio.create_task(
        run(config, factories, stop=stop, connect_deadline=10,
            announce=lambda line: line.startswith("gpuroute: running") and running.set())
    )  # fmt: skip
    done, _ = await asyncio.wait({task, asyncio.create_task(running.wait())}, timeout=40,
                                 return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    assert running.is_set(), task.exception() if task in done else "services did not start"
    yield c, data
    stop.set()
    await asyncio.wait_for(task, 30)


def _js_ready(nc: nats.NATS):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        try:
            await nc.jetstream().stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            return True  # the meta group answers
        except Exception:  # no meta leader yet: timeouts, unavailable
            return False
        return True

    return check


async def _leader(bus: Bus) -> str:
    info = await bus.js.stream_info(STREAM)
    assert info.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


def _stored(db: Path) -> Counter[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return Counter(row[0] for row in conn.execute("SELECT id FROM events"))


async def test_flow_survives_a_node_and_the_stream_leader_restarting(
    gpuroute_on: tuple[Cluster, Path],
) -> None:
    c, data = gpuroute_on
    publisher = await Bus.connect(c.urls, source="scheduler",
                                  credentials=find_credentials(data, "scheduler"))  # fmt: skip
    watcher = await Bus.connect(c.urls, source="store",
                                credentials=find_credentials(data, "store"))  # fmt: skip
    flow = Flow(publisher)
    flowing = asyncio.create_task(flow.run())
    try:
        await flow.grows_by(20)
        leader = await _leader(watcher)
        follower = next(i for i, name in enumerate(c.names) if name != leader)
        for victim in (follower, None):  # None: whichever node leads the stream now
            if victim is None:
                victim = c.names.index(await _leader(watcher))
            c.kill(victim)
            await flow.grows_by(30)  # the flow goes on with two nodes
            c.start(victim)
            await flow.grows_by(30)
        flow.stopping.set()
        await flowing
        acked = set(flow.acked)

        async def all_stored() -> bool:
            return acked <= set(_stored(data / "events.db"))

        await poll(all_stored, timeout=30)
        duplicated = {i: n for i, n in _stored(data / "events.db").items() if n > 1}
        assert duplicated == {}
        assert len(acked) == len(flow.acked)  # each acknowledged once, under its one id
    finally:
        flow.stopping.set()
        await asyncio.gather(flowing, return_exceptions=True)
        await publisher.close()
        await watcher.close()


def test_the_sync_setting_reaches_the_embedded_server_and_a_bad_one_is_named(
    tmp_path: Path,
) -> None:
    """[nats] sync is written as jetstream sync_interval beside the users'
    block it includes, nats-server accepts it; a typo is one ConfigError."""
    from services.runtime.errors import ConfigError
    from services.runtime.natsserver import EmbeddedNats

    conf = write_server_conf(tmp_path / "nats", ensure_credentials(tmp_path / "data").values())
    server = EmbeddedNats(tmp_path / "nats", port=0, config_file=conf, sync="1s")
    server.start()
    try:
        text = (tmp_path / "nats" / "server.conf").read_text()
        assert "sync_interval: 1s" in text and 'include "auth.conf"' in text
    finally:
        server.stop()
    assert load_config().nats.sync == "always"
    (tmp_path / "bad.toml").write_text('[nats]\nsync = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"nats\.sync"):
        load_config(tmp_path / "bad.toml")
