"""Bad HTTP input is a 4xx JSON ``{ok: false, error}`` naming what is wrong: never
a 500, a non-JSON body or no answer (issue "Hardening I", fuzzed findings)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec
import pytest

from schemas import limits
from services.gateway.service import GatewayService

BODY_ROUTES = [
    ("POST", "/api/compute/advise"),
    ("POST", "/api/compute/costs"),
    ("POST", "/api/providers"),
    ("PUT", "/api/providers/p1"),
    ("PUT", "/api/flags"),
    ("POST", "/api/providers/gpu/health"),
    ("POST", "/api/providers/gpu/submit"),
    ("GET", "/api/providers/gpu/poll/x1?provider=runpod"),
    ("POST", "/api/providers/gpu/cancel/x1?provider=runpod"),
    ("GET", "/api/providers/gpu/providers"),
    ("POST", "/api/providers/gpu/simulate"),
]


async def call(
    gateway: GatewayService, method: str, path: str, data: bytes | None = None
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gateway.url + path, data=data) as r:
            assert r.content_type == "application/json", await r.text()
            return r.status, await r.json()


async def raw_exchange(gateway: GatewayService, request: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are; everything the gateway answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def split(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:500]
    return int(head.split()[1]), msgspec.json.decode(body)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_invalid_utf8_in_a_string_is_400_on_every_body_route(gateway, method, path):
    # in a key: every route decodes its keys before it can complain about one
    status, body = await call(gateway, method, path, b'{"\xff\xfe": "\xc3"}')
    assert status == 400 and body["ok"] is False
    assert "invalid UTF-8" in body["error"], body


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_deep_nesting_is_400_naming_the_limit(gateway, method, path):
    deep = b'{"job": {"input": ' + b"[" * 1200 + b"]" * 1200 + b"}}"
    status, body = await call(gateway, method, path, deep)
    assert status == 400 and body["ok"] is False
    assert f"over the limit of {limits.MAX_JSON_DEPTH}" in body["error"], body


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        (f"/api/events?after={2**63}", "$.after"),
        (f"/api/events?after={10**40}", "$.after"),
        ("/api/events?after=1&after=2", "`after` is given more than once"),
        ("/api/modder/hooks?topic=" + "a" * 300, "$.topic"),
        ("/api/modder/hooks?topic=job.%0d%0aPUB", "not a subject pattern"),
        ("/api/providers/" + "p" * 100, "$.id"),
        ("/api/providers/gpu/poll/x?provider=runpod&colour=red", "unknown parameter `colour`"),
    ],
)
async def test_bad_query_or_path_is_400_naming_the_parameter(gateway, path, needle):
    status, body = await call(gateway, "GET", path)
    assert status == 400 and body["ok"] is False
    assert needle in body["error"], body


async def test_a_body_over_the_limit_is_413_naming_it(gateway):
    status, body = await call(
        gateway, "POST", "/api/providers", b'{"notes": "' + b"x" * 300_000 + b'"}'
    )
    assert status == 413 and str(limits.MAX_EVENT_BYTES) in body["error"]


async def test_a_url_over_8190_bytes_is_json_and_one_log_line(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    answer = await raw_exchange(
        gateway, b"GET /api/events?key=" + b"k" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    status, body = split(answer)
    assert status == 400 and body["ok"] is False and "8190" in body["error"]
    records = [r for r in caplog.records if r.name.startswith(("aiohttp", "gpuroute"))]
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == [
        "malformed request"
    ]
    assert all(r.exc_info is None for r in records)


async def test_a_bad_header_is_json(gateway):
    answer = await raw_exchange(
        gateway, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n"
    )
    status, body = split(answer)
    assert status == 400 and body["ok"] is False and "malformed request" in body["error"]


async def test_a_body_shorter_than_its_length_is_408_then_closed(gateway):
    started = asyncio.get_running_loop().time()
    answer = await raw_exchange(
        gateway,
        b'PUT /api/flags HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"flags":',
    )
    status, body = split(answer)
    assert status == 408 and "did not arrive within 1s" in body["error"]
    assert asyncio.get_running_loop().time() - started < 4  # 1 s bound, then closed


async def test_headers_that_never_end_are_closed_in_time(gateway):
    answer = await raw_exchange(gateway, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert answer == b""  # closed by the gateway after request_timeout_s, not held


async def test_a_client_that_resets_mid_body_logs_at_debug(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    _reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"PUT /api/flags HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler is reading the body
    writer.transport.abort()
    async with aiohttp.ClientSession() as session:  # the gateway carries on
        async with session.get(gateway.url + "/health") as r:
            assert r.status == 503  # no store here, but an answer
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        (f"subjects=job.>&after={2**63}", "$.after"),
        ("subjects=" + ",".join(f"a{i}" for i in range(1000)), "MAX_PATTERNS"),
        ("subjects=" + "a" * 5000, f"length <= {limits.MAX_SUBJECT_BYTES}"),
        ("subjects=job.%0d%0aPUB", "not a subject pattern"),
    ],
)
async def test_websocket_subscriptions_are_bounded(gateway, query, needle):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(gateway.url + "/api/modder/hooks/ws?" + query) as ws:
            msg = await ws.receive_json(timeout=5)
            assert msg["ok"] is False and needle in msg["error"], msg
            closing = await ws.receive(timeout=5)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4400
    assert gateway.bus.connected  # nats-server did not close the gateway's connection


async def test_websocket_subscription_frame_is_bounded(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(gateway.url + "/api/modder/hooks/ws") as ws:
            await ws.send_str('{"subjects": ' + "[" * 2000 + "]" * 2000 + "}")
            msg = await ws.receive_json(timeout=5)
            assert msg["ok"] is False and "nested" in msg["error"], msg
