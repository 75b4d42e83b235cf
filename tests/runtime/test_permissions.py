"""NATS permissions from the registry: every forgery of issue 11 is refused by
the server, each user can do what its service does, credentials are private."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from schemas.subjects import HEARTBEAT, MODDER, SERVICES, STORE_READ, STREAM, USERS
from schemas.system import Heartbeat, StoredPage, StoreReadRequest
from services import cli
from services.runtime.bus import Bus
from services.runtime.credentials import (
    Credentials,
    credentials_path,
    ensure_credentials,
    load_credentials,
    write_server_conf,
)
from services.runtime.errors import ConfigError
from services.runtime.natsserver import EmbeddedNats
from services.runtime.permissions import permissions


class Login:
    """A raw connection as one user that records the server's refusals."""

    def __init__(self, nc: Client, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors
        self.refused = asyncio.Event()

    async def wait_refused(self, subject: str) -> None:
        while not any(subject in e for e in self.errors):
            self.refused.clear()
            await asyncio.wait_for(self.refused.wait(), 5)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[EmbeddedNats, dict[str, Credentials]]]:
    creds = ensure_credentials(tmp_path / "data")
    conf = write_server_conf(tmp_path / "data" / "nats", creds.values())
    server = EmbeddedNats(tmp_path / "data" / "nats", port=0, config_file=conf)
    server.start()
    yield server, creds
    server.stop()


@pytest.fixture
async def login(
    secured: tuple[EmbeddedNats, dict[str, Credentials]],
) -> AsyncIterator[object]:
    server, creds = secured
    opened: list[Client] = []

    async def connect(user: str) -> Login:
        errors: list[str] = []
        holder: list[Login] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e).lower())
            holder[0].refused.set()

        c = creds[user]
        nc = await nats.connect(server.url, user=c.user, password=c.password,
                                inbox_prefix=c.inbox_prefix, error_cb=on_error,
                                max_reconnect_attempts=0)  # fmt: skip
        opened.append(nc)
        holder.append(Login(nc, errors))
        return holder[0]

    yield connect
    for nc in opened:
        await nc.close()


async def _store_with_consumer(login: object) -> Login:
    store: Login = await login("store")  # type: ignore[operator]
    bus = Bus(store.nc, source="store")
    await bus.ensure_streams()
    await bus.js.add_consumer(
        STREAM, ConsumerConfig(durable_name="store", ack_policy=AckPolicy.ALL)
    )
    return store


async def test_forged_flags_changed_is_refused_for_modder_and_non_owner(login: object) -> None:
    store = await _store_with_consumer(login)
    for user in (MODDER, "adapters", "gateway"):
        forger: Login = await login(user)  # type: ignore[operator]
        js = forger.nc.jetstream(timeout=0.5)
        with pytest.raises(nats.errors.Error):
            await js.publish("flags.changed", b'{"type":"flags.changed"}')
        await forger.wait_refused('publish to "flags.changed"')
    info = await store.nc.jetstream().stream_info(STREAM)
    assert info.state.messages == 0
    owner: Login = await login("advisor")  # type: ignore[operator]
    await owner.nc.jetstream().publish("flags.changed", b"{}")  # the registry's publisher
    assert (await store.nc.jetstream().stream_info(STREAM)).state.messages == 1


async def test_forged_stored_broadcast_with_a_huge_seq_reaches_nobody(login: object) -> None:
    reader: Login = await login("gateway")  # type: ignore[operator]
    seen: list[bytes] = []

    async def on_msg(msg: object) -> None:
        seen.append(msg.data)  # type: ignore[attr-defined]

    await reader.nc.subscribe("stored.>", cb=on_msg)
    await reader.nc.flush()
    forged = b'{"seq":%d,"event":{"type":"flags.changed"}}' % 10**15
    for user in (MODDER, "advisor", "gateway"):
        forger: Login = await login(user)  # type: ignore[operator]
        await forger.nc.publish("stored.flags.changed", forged)
        await forger.nc.flush()
        await forger.wait_refused('publish to "stored.flags.changed"')
    await reader.nc.flush()
    assert seen == []
    store: Login = await login("store")  # type: ignore[operator]
    await store.nc.publish("stored.flags.changed", b"{}")
    await store.nc.flush()
    await reader.nc.flush()
    assert seen == [b"{}"]


async def test_only_the_store_may_delete_its_consumer(login: object) -> None:
    store = await _store_with_consumer(login)
    for user in (MODDER, "advisor", "gateway", "adapters"):
        other: Login = await login(user)  # type: ignore[operator]
        with pytest.raises(nats.errors.Error):
            await other.nc.jetstream(timeout=0.5).delete_consumer(STREAM, "store")
        await other.wait_refused("$js.api.consumer.delete.gpuroute.store")
        with pytest.raises(nats.errors.Error):
            await other.nc.jetstream(timeout=0.5).delete_stream(STREAM)
    info = await store.nc.jetstream().consumer_info(STREAM, "store")
    assert info.name == "store"


async def test_twenty_thousand_fake_heartbeats_from_the_modder_reach_nobody(
    login: object,
) -> None:
    gateway: Login = await login("gateway")  # type: ignore[operator]
    beats: list[bytes] = []

    async def on_beat(msg: object) -> None:
        beats.append(msg.data)  # type: ignore[attr-defined]

    await gateway.nc.subscribe(HEARTBEAT, cb=on_beat)
    await gateway.nc.flush()
    modder: Login = await login(MODDER)  # type: ignore[operator]
    for i in range(20_000):
        fake = Heartbeat(service="x", instance=str(i), version="0", pid=1, uptime_s=0, ts=0)
        await modder.nc.publish(HEARTBEAT, msgspec.json.encode(fake))
    await modder.nc.flush(timeout=30)
    await modder.wait_refused('publish to "svc.heartbeat"')
    await gateway.nc.flush()
    assert beats == []
    assert modder.nc.is_connected  # refused, not disconnected


async def test_modder_reads_events_and_the_store_and_publishes_nothing_else(
    login: object,
) -> None:
    modder: Login = await login(MODDER)  # type: ignore[operator]
    store: Login = await login("store")  # type: ignore[operator]

    async def answer(msg: object) -> None:
        page = StoredPage(events=[], last_seq=7)
        await msg.respond(msgspec.json.encode(page))  # type: ignore[attr-defined]

    await store.nc.subscribe(STORE_READ, cb=answer)
    await store.nc.flush()
    reply = await modder.nc.request(STORE_READ, msgspec.json.encode(StoreReadRequest()), timeout=5)
    assert msgspec.json.decode(reply.data, type=StoredPage).last_seq == 7
    await modder.nc.subscribe("stored.job.>")
    await modder.nc.subscribe("job.>")
    await modder.nc.subscribe(HEARTBEAT)  # not an event: refused
    await modder.wait_refused('subscription to "svc.heartbeat"')
    assert not any("stored.job" in e or '"job.>' in e for e in modder.errors)
    perms = permissions(MODDER)
    assert set(perms.publish) == {STORE_READ, "$SRV.>"} and not perms.allow_responses


@pytest.mark.parametrize("user", SERVICES)
async def test_each_service_publishes_only_its_own_subjects(login: object, user: str) -> None:
    me: Login = await login(user)  # type: ignore[operator]
    allowed = [s for s in permissions(user).publish if "*" not in s and ">" not in s]
    assert allowed, user
    for subject in allowed:
        await me.nc.publish(subject, b"{}")
    await me.nc.publish("flags.changed" if user != "advisor" else "job.failed", b"{}")
    await me.nc.flush()
    await me.wait_refused("permissions violation for publish")
    assert len(me.errors) == 1, me.errors


async def test_a_refused_subscription_is_a_fault_in_the_heartbeat(
    secured: tuple[EmbeddedNats, dict[str, Credentials]], config: object
) -> None:
    """A subscription the server refuses gets nothing, silently: the bus
    remembers the refusal (bounded) and the service's heartbeat names it."""
    from services.runtime.bus import MAX_REFUSALS
    from services.runtime.service import Service
    from tests.support import poll

    server, creds = secured
    bus = await Bus.connect(server.url, source="budget", credentials=creds["budget"])
    try:
        service = Service(bus, config)  # type: ignore[arg-type]
        assert service.faults() == []
        for i in range(MAX_REFUSALS + 3):
            await bus.nc.subscribe(f"stored.job.x{i}")
        await bus.nc.flush()
        await poll(lambda: len(bus.refused) == MAX_REFUSALS)  # nothing announces a refusal
        faults = service.heartbeat().faults
        assert len(faults) == MAX_REFUSALS
        assert (
            faults[-1].startswith("NATS refused:")
            and f"stored.job.x{MAX_REFUSALS + 2}" in (faults[-1])
        )
    finally:
        await bus.close()


def test_credentials_are_private_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ensure_credentials(data)
    assert set(first) == set(USERS)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "credentials").stat().st_mode) == 0o700
    for user in USERS:
        path = credentials_path(data, user)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_credentials(path) == first[user]
    assert ensure_credentials(data) == first  # passwords survive a restart
    assert len({c.password for c in first.values()}) == len(USERS)
    conf = write_server_conf(data / "nats", first.values())
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert "***" in repr(first[MODDER]) and first[MODDER].password not in repr(first[MODDER])


def test_a_bad_credentials_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('user = "store"\npasword = "typo"\n')
    with pytest.raises(ConfigError, match=r"x\.toml: not a credentials file"):
        load_credentials(path)
    with pytest.raises(ConfigError, match="cannot read credentials"):
        load_credentials(tmp_path / "missing.toml")


def test_creds_command_prints_the_modder_login(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert cli.main(["creds", "modder", "--data-dir", str(data)]) == 1
    assert "run `gpuroute up` there first" in capsys.readouterr().err
    creds = ensure_credentials(data)[MODDER]
    (data / "nats.url").write_text("nats://127.0.0.1:4999\n")
    assert cli.main(["creds", "modder", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"nats://modder:{creds.password}@127.0.0.1:4999", "inbox prefix: _INBOX.modder"]


async def test_events_db_and_log_are_private(tmp_path: Path) -> None:
    from services.runtime.logs import setup_logging
    from services.store.eventlog import EventLog

    data = tmp_path / "data"
    log = data / "gpuroute.log"
    setup_logging("WARNING", log)
    try:
        eventlog = await EventLog.open(data / "events.db")
        await eventlog.close()
    finally:
        setup_logging("WARNING")  # let go of the file handler
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in (log, data / "events.db"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    (data / "events.db").chmod(0o644)  # made by an older version: tightened on open
    eventlog = await EventLog.open(data / "events.db")
    await eventlog.close()
    assert stat.S_IMODE((data / "events.db").stat().st_mode) == 0o600


async def test_up_runs_every_service_as_its_own_user(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded server of ``up`` requires a login; each service works as
    its own user: a scheduler-published job is consumed by the advisor,
    advised, stored, and read back by the modder; a scheduler's reservation is
    answered by the cloud service, whose event is stored (and whose read of the
    stream's newest change, services/runtime/catch_up.py, is allowed: without it
    the service never gets ready); nothing is refused."""
    from schemas.jobs import JobSpec, JobSubmitted
    from services.runtime.config import load_config
    from services.runtime.credentials import find_credentials
    from services.runtime.runner import NATS_URL_FILE, run
    from tests.support import poll, watch_stored

    names = ["store", "adapters", "advisor", "telemetry", "budget", "scheduler", "cloud", "gateway"]
    config = load_config(data_dir=str(tmp_path / "data"), nats__port=0, http__port=0)
    config.advisor.ready_timeout_s = 5
    running, stop = asyncio.Event(), asyncio.Event()
    factories = [(n, cli._load(cli.SERVICES[n])) for n in names]
    task = asyncio.create_task(
        run(
            config,
            factories,
            stop=stop,
            announce=lambda line: line.startswith("gpuroute: running") and running.set(),
        )
    )
    try:
        await asyncio.wait_for(running.wait(), 60)
        data = config.data_path
        url = (data / NATS_URL_FILE).read_text().strip()
        host, port = url.removeprefix("nats://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        assert b'"auth_required":true' in await reader.readline()  # the server's INFO
        writer.close()
        scheduler = await Bus.connect(url, source="scheduler",
                                      credentials=find_credentials(data, "scheduler"))  # fmt: skip
        modder = await Bus.connect(url, source="modder",
                                   credentials=find_credentials(data, MODDER))  # fmt: skip
        try:
            async with watch_stored(modder) as stored:
                submitted = JobSubmitted(spec=JobSpec(width=512, height=512))
                job = await scheduler.emit(submitted, key="j1")
                await stored.first("job.advised", timeout=30)
                reserved = await poll(lambda: _reserve(scheduler), timeout=30, interval=0.1)
                assert reserved.ok and reserved.dry_run, reserved
                cost = await stored.first("cloud.cost.reserved", timeout=30)
                assert cost.source == "cloud" and cost.payload.ref == "call-1"
            page = await modder.call(STORE_READ, StoreReadRequest(type="job."), StoredPage)
            assert len(page.events) == 2
            assert job.type == "job.submitted"
        finally:
            await scheduler.close()
            await modder.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    refused = [str(r.__dict__) for r in caplog.records if "permissions violation" in
               str(r.__dict__).lower()]  # fmt: skip
    assert refused == []


async def _reserve(bus: Bus) -> object:
    """A reservation at the cloud service, or None while it loads (503)."""
    from schemas.cloud import RESERVE, ReserveAnswer, ReserveRequest
    from services.runtime.errors import ServiceCallError

    try:
        return await bus.call(RESERVE, ReserveRequest(ref="call-1", max_s=10.0), ReserveAnswer, 5)
    except ServiceCallError:
        return None
