"""Dead tasks are noticed (log, heartbeat faults) and repaired (restarted
loops, fresh instances), and a service whose connection the server closed
comes back on a new one."""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar

import msgspec
import pytest

from schemas.subjects import HEARTBEAT
from schemas.system import Heartbeat
from services.runtime import service as service_module
from services.runtime.bus import Bus
from services.runtime.endpoints import endpoint
from services.runtime.runner import Supervisor
from services.runtime.service import Service
from tests.support import poll


class Ping(msgspec.Struct, frozen=True):
    pass


class Echo(Service):
    """Answers ``test.sup.ping`` with its instance id; ``flaky`` loop deaths
    and one-shot ``doomed`` deaths are set per test on the class."""

    name = "echo"
    flaky_deaths: ClassVar[int] = 0
    doomed: ClassVar[int] = 0  # instances whose one-shot task dies at start
    flaky_running: asyncio.Event

    async def setup(self) -> None:
        assert self.micro is not None
        await self.micro.add_endpoint(
            name="ping", subject="test.sup.ping", handler=endpoint(Ping, self.ping)
        )
        self.flaky_running = asyncio.Event()
        self.supervise(self.flaky, "flaky")
        if Echo.doomed:
            Echo.doomed -= 1
            self.spawn(self.dies(), "doomed")

    async def ping(self, _: Ping) -> dict[str, str]:
        return {"instance": self.instance}

    async def flaky(self) -> None:
        if Echo.flaky_deaths:
            Echo.flaky_deaths -= 1
            raise RecursionError("maximum recursion depth exceeded")
        self.flaky_running.set()
        await asyncio.Event().wait()

    async def dies(self) -> None:
        raise ValueError("lost its state")


@pytest.fixture(autouse=True)
def _reset(monkeypatch):  # type: ignore[no-untyped-def]
    Echo.flaky_deaths = Echo.doomed = 0
    monkeypatch.setattr(service_module, "HEALTHY_AFTER_S", 0.5)


async def beats(bus: Bus) -> list[Heartbeat]:
    seen: list[Heartbeat] = []

    async def on_beat(msg):  # type: ignore[no-untyped-def]
        seen.append(msgspec.json.decode(msg.data, type=Heartbeat))

    await bus.nc.subscribe(HEARTBEAT, cb=on_beat)
    await bus.nc.flush()
    return seen


async def test_a_dying_loop_is_restarted_and_named_in_heartbeats_until_well(config, bus, caplog):
    seen = await beats(bus)
    Echo.flaky_deaths = 2
    service = Echo(await Bus.connect(config.nats.url or "", source="echo"), config)
    caplog.set_level(logging.WARNING, logger="gpuroute.echo")
    await service.start()
    try:
        await asyncio.wait_for(service.flaky_running.wait(), 5)
        faulty = await poll(lambda: [b for b in seen if b.faults])
        assert faulty[0].faults[0].startswith("task flaky died: RecursionError: maximum recursion")
        await poll(lambda: service.faults() == [] and seen[-1].faults == [])
        died = [r for r in caplog.records if "died" in r.getMessage()]
        assert [r.exc_info is not None for r in died] == [True, False]  # one traceback
        assert [r.fields["fault"] for r in died] == [  # type: ignore[attr-defined]
            "task flaky died: RecursionError: maximum recursion depth exceeded; "
            f"restarted {n} times, next in {delay} s"
            for n, delay in ((0, 0.1), (1, 0.2))
        ]
        assert not service.failed.is_set()
    finally:
        await service.stop()
        await service.bus.close()


async def test_a_dead_one_shot_task_fails_the_service(config):
    Echo.doomed = 1
    service = Echo(await Bus.connect(config.nats.url or "", source="echo"), config)
    await service.start()
    try:
        await asyncio.wait_for(service.failed.wait(), 5)
        assert service.faults() == [
            "task doomed died: ValueError: lost its state; the service restarts"
        ]
        assert service.heartbeat().faults == service.faults()
    finally:
        await service.stop()
        await service.bus.close()


async def test_a_failed_service_is_replaced_by_a_fresh_instance(config, bus):
    Echo.doomed = 1
    supervisor = Supervisor(config, [("echo", Echo)])
    await supervisor.start(config.nats.url or "")
    try:
        await poll(lambda: supervisor.restarts("echo") == 1)
        fresh = supervisor.current("echo")
        assert fresh is not None and fresh.faults() == []
        reply = await bus.call_raw("test.sup.ping", b"{}")
        assert msgspec.json.decode(reply)["instance"] == fresh.instance
    finally:
        await supervisor.stop()


async def test_a_service_whose_connection_the_server_closed_answers_again(config, bus):
    supervisor = Supervisor(config, [("echo", Echo)])
    await supervisor.start(config.nats.url or "")
    try:
        first = supervisor.current("echo")
        assert first is not None
        await bus.call_raw("test.sup.ping", b"{}")
        await first.bus.nc.subscribe("x" * 5000)  # the server closes this connection
        await poll(lambda: supervisor.restarts("echo") == 1)
        assert first.bus.lost
        fresh = supervisor.current("echo")
        assert fresh is not None and fresh is not first and fresh.bus.connected
        reply = await bus.call_raw("test.sup.ping", b"{}")
        assert msgspec.json.decode(reply)["instance"] == fresh.instance
    finally:
        await supervisor.stop()
    assert fresh.bus.nc.is_closed and not fresh.bus.lost


async def test_the_gateway_comes_back_on_the_same_port(config, store):
    import aiohttp

    from services.gateway.service import GatewayService

    supervisor = Supervisor(config, [("gateway", GatewayService)])
    await supervisor.start(config.nats.url or "")
    try:
        first = supervisor.current("gateway")
        assert isinstance(first, GatewayService)
        url = f"{first.url}/api/events?after=0"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as r:
                assert r.status == 200, await r.text()
            await first.bus.nc.publish("y" * 5000, b"")  # the server closes this connection
            await poll(lambda: supervisor.restarts("gateway") == 1)
            fresh = supervisor.current("gateway")
            assert isinstance(fresh, GatewayService) and fresh.port == first.port
            async with session.get(url) as r:
                assert r.status == 200, await r.text()
    finally:
        await supervisor.stop()
