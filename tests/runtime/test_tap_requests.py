"""A taking endpoint served from the tap (``endpoints.tap_requests``): taken
requests are answered later in order, refused ones (and the ones after them)
are served in arrival order by one task, a backlog past the limit is a 503,
bad bodies are a 400, and ``$SRV.STATS`` counts every request."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from services.runtime.bus import Bus
from services.runtime.endpoints import Pending, Taking, endpoint, tap_requests
from services.runtime.service import Service


class Cmd(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    n: int = 0


class Taker(Service):
    """Takes requests while ``open`` (answers them when ``release`` is called),
    serves the rest in tasks that wait for ``gate``."""

    name = "taker"

    def __init__(self, bus: Bus, config, limit: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(bus, config)
        self.limit = limit
        self.open = True
        self.taken: list[tuple[int, Pending]] = []
        self.gate = asyncio.Event()
        self.served: list[int] = []
        self.took = asyncio.Event()
        self.serving = asyncio.Event()

    async def setup(self) -> None:
        assert self.micro is not None

        def take(req: Cmd, pending: Pending) -> bool:
            if not self.open:
                return False
            self.taken.append((req.n, pending))
            self.took.set()
            return True

        handle = endpoint(Cmd, self.serve, take=take)
        assert isinstance(handle, Taking)
        await self.micro.add_endpoint(name="cmd", subject="test.tap.cmd", handler=handle)
        tap_requests(self.micro, "cmd", handle, self.spawn, limit=self.limit)

    async def serve(self, req: Cmd) -> dict[str, int]:
        self.serving.set()
        await self.gate.wait()
        self.served.append(req.n)
        return {"served": req.n}

    async def wait_taken(self, n: int) -> None:
        while len(self.taken) < n:
            self.took.clear()
            await asyncio.wait_for(self.took.wait(), 5)

    async def release(self) -> None:
        for n, pending in self.taken:
            await pending.reply({"taken": n})
        self.taken.clear()


@pytest.fixture
async def taker(config):  # type: ignore[no-untyped-def]
    service = Taker(await Bus.connect(config.nats.url or "", source="taker"), config, limit=3)
    await service.start()
    yield service
    await service.stop()
    await service.bus.close()


async def request(bus: Bus, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return await bus.nc.request("test.tap.cmd", body, timeout=5, headers=headers)


async def test_taken_requests_skip_micro_and_are_answered_when_released(bus, taker):
    sends = [asyncio.create_task(request(bus, b'{"n": %d}' % i)) for i in range(20)]
    await taker.wait_taken(20)
    await taker.release()
    replies = [json.loads(m.data) for m in await asyncio.gather(*sends)]
    assert replies == [{"taken": i} for i in range(20)]
    ep = taker.micro._endpoints[0]  # type: ignore[union-attr]
    assert ep._num_requests == 20  # $SRV.STATS counts tapped requests


async def test_a_bad_body_is_a_400_naming_the_field(bus, taker):
    msg = await request(bus, b'{"n": "x"}')
    assert msg.headers["Nats-Service-Error-Code"] == "400"
    assert "$.n" in msg.headers["Nats-Service-Error"]


async def ready_inbox(bus: Bus, taker: Taker) -> None:
    """One request through, so that nats-py's reply inbox is set up: from here
    on each request is published in the order its task was made."""
    first = asyncio.create_task(request(bus, b'{"n": 100}'))
    await taker.wait_taken(1)
    await taker.release()
    await first


async def test_refused_requests_wait_in_order_and_past_the_limit_are_503(bus, taker):
    """The read loop never waits: once take refuses, that request and the ones
    after it are handled by one task in arrival order (served here, each
    waiting for the gate); past 3 waiting, a request is told the backlog at
    once, which also shows the loop kept reading."""
    await ready_inbox(bus, taker)
    taker.open = False
    waiting = [asyncio.create_task(request(bus, b'{"n": 0}'))]
    await asyncio.wait_for(taker.serving.wait(), 5)  # refused: served, it waits for the gate
    waiting += [asyncio.create_task(request(bus, b'{"n": %d}' % i)) for i in range(1, 4)]
    await bus.nc.flush()
    busy = await request(bus, b'{"n": 9}')
    assert busy.headers["Nats-Service-Error-Code"] == "503"
    assert "3 requests waiting" in busy.headers["Nats-Service-Error"]
    ep = taker.micro._endpoints[0]  # type: ignore[union-attr]
    assert (ep._num_requests, ep._num_errors) == (6, 1)  # $SRV.STATS counts the refusal
    taker.gate.set()
    replies = [json.loads(m.data) for m in await asyncio.gather(*waiting)]
    assert replies == [{"served": i} for i in range(4)]
    assert taker.served == [0, 1, 2, 3]


async def test_a_request_take_would_accept_waits_behind_the_refused_ones(bus, taker):
    await ready_inbox(bus, taker)
    taker.open = False
    waiting = [asyncio.create_task(request(bus, b'{"n": 0}'))]
    await asyncio.wait_for(taker.serving.wait(), 5)
    waiting.append(asyncio.create_task(request(bus, b'{"n": 1}')))  # refused: behind 0
    await bus.nc.flush()
    taker.open = True
    waiting.append(asyncio.create_task(request(bus, b'{"n": 2}')))  # takeable: still behind
    await bus.nc.flush()
    assert taker.taken == []
    taker.gate.set()  # 0 is served; 1 and 2 are offered to take again, in order
    await taker.wait_taken(2)
    assert [n for n, _ in taker.taken] == [1, 2]
    await taker.release()
    replies = [json.loads(m.data) for m in await asyncio.gather(*waiting)]
    assert replies == [{"served": 0}, {"taken": 1}, {"taken": 2}]


async def test_a_request_with_headers_is_served_like_any_other(bus, taker):
    taker.gate.set()
    sent = asyncio.create_task(request(bus, b'{"n": 7}', headers={"X-Trace": "abc"}))
    await taker.wait_taken(1)
    await taker.release()
    assert json.loads((await sent).data) == {"taken": 7}
