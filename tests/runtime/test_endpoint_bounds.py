"""Endpoints: every request decodes through schemas.limits; replies never
break the connection; a handler never raises out of the micro callback."""

from __future__ import annotations

import msgspec
import pytest
from nats.micro.request import Request

from schemas import limits
from services.runtime.bus import Bus
from services.runtime.endpoints import MAX_ERROR_TEXT, EndpointError, endpoint
from services.runtime.errors import ServiceCallError
from services.runtime.service import Service


class Hello(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = "world"
    extra: object = None


class Echo(Service):
    name = "echo"

    async def setup(self) -> None:
        assert self.micro is not None
        await self.micro.add_endpoint(
            name="hello", subject="test.echo.hello", handler=endpoint(Hello, self.hello)
        )
        spawned = endpoint(Hello, self.hello)

        async def concurrently(req: Request) -> None:  # how the adapters serve requests
            self.spawn(spawned(req), "request")

        await self.micro.add_endpoint(
            name="spawned", subject="test.echo.spawned", handler=concurrently
        )

    async def hello(self, req: Hello) -> dict[str, str]:
        if req.name == "fail":
            raise EndpointError(409, "line one\r\nNats-Service-Error-Code: 200\r\n" + "y" * 5000)
        return {"hello": req.name}


@pytest.fixture
async def echo(config):  # type: ignore[no-untyped-def]
    service = Echo(await Bus.connect(config.nats.url or "", source="echo"), config)
    await service.start()
    yield service
    await service.stop()
    await service.bus.close()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"name": "a", "extra": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested 1001 levels deep"),
        (b'{"name": "\xff\xfe"}', "invalid UTF-8"),
        (b'{"name": "' + b"a" * limits.MAX_EVENT_BYTES + b'"}', "over the limit of"),
        (b'{"name": 5}', "Expected `str`, got `int` - at `$.name`"),
    ],
)
async def test_bad_bodies_are_400s_naming_the_problem(echo, bus, body, problem):
    with pytest.raises(ServiceCallError) as e:
        await bus.call_raw("test.echo.hello", body)
    assert e.value.code == 400 and problem in e.value.description, e.value
    assert await bus.call_raw("test.echo.hello", b'{"name": "ok"}') == b'{"hello":"ok"}'


async def test_an_error_text_is_one_line_of_bounded_length(echo, bus):
    with pytest.raises(ServiceCallError) as e:
        await bus.call_raw("test.echo.hello", b'{"name": "fail"}')
    assert e.value.code == 409
    assert "\n" not in e.value.description and len(e.value.description) == MAX_ERROR_TEXT
    assert echo.bus.connected and not echo.bus.lost
    assert await bus.call_raw("test.echo.hello", b"{}") == b'{"hello":"world"}'


async def test_a_request_without_reply_subject_kills_nothing(echo, bus):
    for subject in ("test.echo.hello", "test.echo.spawned"):
        await bus.nc.publish(subject, b'{"name": "nobody listens"}')
        await bus.nc.publish(subject, b"\xff garbage")
    await bus.nc.flush()
    assert await bus.call_raw("test.echo.spawned", b"{}") == b'{"hello":"world"}'
    assert not echo.failed.is_set() and echo.faults() == []
