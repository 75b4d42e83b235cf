"""The Host / Origin / token guard on a real socket (issue: nobody on a web page
can drive the gateway). Each case is an attack seen from outside, now refused."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from services.gateway.guard import GuardSettings, guard, host_name


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "method": request.method})


def _app(settings: GuardSettings) -> web.Application:
    app = web.Application(middlewares=[guard(settings)])
    app.router.add_get("/health", _ok)
    app.router.add_get("/api/flags", _ok)
    app.router.add_put("/api/flags", _ok)
    app.router.add_post("/api/providers", _ok)
    return app


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(_app(GuardSettings.build(bind_host="127.0.0.1")))


async def test_curl_without_origin_works(client: Any) -> None:
    r = await client.put("/api/flags", data=b"{}")
    assert r.status == 200


async def test_a_foreign_origin_cannot_post_a_simple_request(client: Any) -> None:
    r = await client.post(
        "/api/providers",
        data=b'{"id":"attacker"}',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    body = await r.json()
    assert r.status == 403 and body["ok"] is False
    assert "evil.example" in body["error"]


async def test_the_gateways_own_origin_is_allowed(client: Any) -> None:
    host = f"127.0.0.1:{client.port}"
    r = await client.put("/api/flags", data=b"{}", headers={"Origin": f"http://{host}"})
    assert r.status == 200
    # same host name, other port: another origin
    r = await client.put("/api/flags", data=b"{}", headers={"Origin": "http://127.0.0.1:1"})
    assert r.status == 403


async def test_dns_rebinding_host_is_421(client: Any) -> None:
    r = await client.get("/api/flags", headers={"Host": "evil.example"})
    body = await r.json()
    assert r.status == 421 and "evil.example" in body["error"]
    for good in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        r = await client.get("/api/flags", headers={"Host": good})
        assert r.status == 200, good


async def test_configured_hosts_and_origins(aiohttp_client: Any) -> None:
    settings = GuardSettings.build(
        bind_host="0.0.0.0", hosts=["gpu-box.lan"], origins=["https://dash.example/"]
    )
    client = await aiohttp_client(_app(settings))
    r = await client.get("/api/flags", headers={"Host": "gpu-box.lan:8000"})
    assert r.status == 200
    r = await client.put("/api/flags", headers={"Origin": "https://dash.example"})
    assert r.status == 200


async def test_token_needed_everywhere_but_health(aiohttp_client: Any) -> None:
    client = await aiohttp_client(
        _app(GuardSettings.build(bind_host="127.0.0.1", token="s3cret-token"))
    )
    assert (await client.get("/health")).status == 200
    r = await client.get("/api/flags")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "s3cret" not in await r.text()
    r = await client.get("/api/flags", headers={"Authorization": "Bearer wrong"})
    assert r.status == 401
    r = await client.get("/api/flags", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status == 200


async def test_token_only_for_state_changes(aiohttp_client: Any) -> None:
    settings = GuardSettings.build(bind_host="127.0.0.1", token="tok", read_token=False)
    client = await aiohttp_client(_app(settings))
    assert (await client.get("/api/flags")).status == 200
    assert (await client.put("/api/flags")).status == 401
    r = await client.put("/api/flags", headers={"Authorization": "Bearer tok"})
    assert r.status == 200


def test_host_name_parsing() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:80") == "::1"
    assert host_name("::1") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
