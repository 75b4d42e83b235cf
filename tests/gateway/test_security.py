"""The guard wired into the real gateway (issue "Security"): what a web page,
a rebinding DNS name or a cross-site WebSocket tried is refused before any
body is read, curl keeps working, and a token guards every route but
``/health`` without ever showing up in an answer, a log line or an event."""

from __future__ import annotations

import logging
import re
import subprocess
from typing import Any

import aiohttp
import pytest

from services.gateway.routes import TABLE
from services.gateway.service import GatewayService
from services.runtime.config import Config
from tests.gateway.conftest import running

TOKEN = "tok-" + "s3cret" * 4
EVIL = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
FLAG = "features.enable_compute"


async def send(
    gateway: GatewayService, method: str, path: str, data: bytes | None = None, **headers: str
) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gateway.url + path, data=data, headers=headers) as r:
            text = await r.text()
            body = await r.json(content_type=None) if r.content_type == "application/json" else None
            return r.status, body, text


async def test_a_web_page_cannot_post_or_put_and_nothing_is_recorded(stack: GatewayService):
    attacker = b'{"id": "attacker", "kind": "runpod", "display_name": "x"}'
    status, body, _ = await send(stack, "POST", "/api/providers", attacker, **EVIL)
    assert status == 403 and body["ok"] is False and "evil.example" in body["error"]
    flags = b'{"flags": {"%s": true}}' % FLAG.encode()
    status, _, _ = await send(stack, "PUT", "/api/flags", flags, **EVIL)
    assert status == 403
    # the same PUT the way curl sends it (no Origin, any Content-Type) goes through;
    # it is answered after its event is stored, so the refused ones would be there too
    plain = {"Content-Type": "text/plain"}
    status, body, _ = await send(stack, "PUT", "/api/flags", flags, **plain)
    assert status == 200 and body["changed"] == [FLAG]
    _, page, _ = await send(stack, "GET", "/api/events?types=flags.&types=provider.&limit=1000")
    recorded = [(i["event"]["type"], i["event"]["key"]) for i in page["events"]]
    assert ("provider.upserted", "attacker") not in recorded
    assert [t for t, _ in recorded if t == "flags.changed"] == ["flags.changed"]
    status, _, _ = await send(stack, "GET", "/api/providers/attacker")
    assert status == 404


async def test_a_rebinding_host_is_421_and_the_own_origin_is_served(stack: GatewayService):
    status, body, _ = await send(stack, "GET", "/api/flags", Host="evil.example")
    assert status == 421 and "evil.example" in body["error"]
    own = f"http://127.0.0.1:{stack.port}"
    status, body, _ = await send(stack, "GET", "/api/flags", Origin=own)
    assert status == 200 and body["ok"] is True


async def test_a_cross_site_websocket_handshake_is_403(stack: GatewayService):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                stack.url + "/api/modder/hooks/ws?subjects=job.>", origin="http://evil.example"
            )
        assert refused.value.status == 403
        url = stack.url + "/api/modder/hooks/ws?subjects=job.>&after=0"
        async with session.ws_connect(url) as ws:  # no Origin: a script, not a page
            assert not ws.closed


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/health", None),
        ("GET", "/api/events?after=0&limit=10", None),
        ("GET", "/api/modder/hooks?topic=job&limit=20", None),
        ("GET", "/api/gpu/list?debug=1", None),
        ("POST", "/api/compute/advise", b'{"width":1024,"height":1024,"debug":true}'),
        ("POST", "/api/compute/costs", b'{"queue":"remote","duration_minutes":2,"debug":true}'),
        ("GET", "/api/providers", None),
        ("PUT", "/api/flags", b'{"flags":{"features.enable_compute":true}}'),
        ("GET", "/api/providers/gpu/providers", None),
    ],
)
async def test_the_readmes_curl_lines_still_work(stack, method, path, data):
    # curl -d sends application/x-www-form-urlencoded and no Origin
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
    status, body, _ = await send(stack, method, path, data, **headers)
    assert status in (200, 503) and body is not None, body  # /health: no telemetry service
    assert status == 200 or path == "/health"


def _example(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.fixture
async def guarded(config: Config, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GPUROUTE_TOKEN", TOKEN)
    config.gateway.request_timeout_s = 2.0
    async with running(GatewayService, config, "gateway") as service:
        yield service


async def test_with_a_token_every_route_but_health_needs_it(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    answers = []
    for route in TABLE:
        path = _example(route.path)
        status, _, text = await send(guarded, route.method, path)
        answers.append(text)
        if route.open:
            assert status != 401, route.path
            continue
        assert status == 401, (route.method, path, status)
        status, _, text = await send(guarded, route.method, path, Authorization="Bearer nope")
        assert status == 401 and "nope" not in text
        answers.append(text)
        status, _, text = await send(guarded, route.method, path, Authorization=f"Bearer {TOKEN}")
        assert status != 401, (route.method, path)
        answers.append(text)
    seen = "\n".join(answers) + "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert TOKEN not in seen and "s3cret" not in seen
    assert TOKEN not in repr(guarded.config)


async def test_a_read_token_false_gateway_guards_only_changes(config: Config):
    config.gateway.token, config.gateway.read_token = TOKEN, False
    async with running(GatewayService, config, "gateway") as gateway:
        assert (await send(gateway, "GET", "/api/flags"))[0] == 503  # no advisor: not a 401
        assert (await send(gateway, "PUT", "/api/flags", b"{}"))[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        flags = b'{"flags": {"features.enable_compute": true}}'
        assert (await send(gateway, "PUT", "/api/flags", flags, **bearer))[0] == 503


def test_up_beyond_loopback_without_a_token_refuses_to_start(tmp_path, monkeypatch):
    from tests.support import gpuroute

    monkeypatch.delenv("GPUROUTE_TOKEN", raising=False)
    p = gpuroute("up", "--http-host", "0.0.0.0", "--data-dir", str(tmp_path),
                 stderr=subprocess.PIPE)  # fmt: skip
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2
    assert err.decode().strip().splitlines() == [
        "gpuroute: error: --http-host 0.0.0.0 is not a loopback address: "
        "set [gateway] token or GPUROUTE_TOKEN first"
    ]
    assert list(tmp_path.iterdir()) == []  # refused before anything was created
