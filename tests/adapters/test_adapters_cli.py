"""``gpuroute up`` with the adapters: a malformed secrets file is one line and exit 1; and,
end to end, a known token never shows up in the event store, the log file, stderr or any
HTTP response while every adapter runs live against its fake provider."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS
from tests.adapters.adapter_fakes import MODAL_SECRET, TOKEN, Scripted
from tests.adapters.stack import (
    ENV_NAMES,
    SECRETS,
    SECRETS_TOML,
    Provider,
    start_providers,
)
from tests.support import BIN, poll


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gpuroute"), *args], capture_output=True, text=True,
                          env=_env(), timeout=30)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("secrets", "line"),
    [
        ("[runpod]\napi_key = 42\n", "key 'runpod.api_key': expected a string, got int"),
        ('[replicate]\napi_tokn = "x"\n', "key 'replicate.api_tokn': unknown key"),
        ('[modal]\ntoken_id = "wk-1\n', "key 'modal.token_id': not valid TOML"),
    ],
)
def test_a_malformed_secrets_file_stops_up_with_one_line(
    tmp_path: Path, secrets: str, line: str
) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(secrets)
    config = tmp_path / "gpuroute.toml"
    config.write_text(f'[adapters]\nsecrets_file = "{secrets_file}"\n')
    r = _run("up", "--config", str(config), "--data-dir", str(tmp_path / "data"),
             "--nats-port", "0", "--http-port", "0")  # fmt: skip
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gpuroute: error: secrets file {secrets_file}: {line}")
    assert "Traceback" not in r.stderr


def test_serve_adapters_alone_stops_on_a_malformed_secrets_file(
    tmp_path: Path, nats_server: Any
) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('[lambda]\napi_key = "x"\n')
    config = tmp_path / "gpuroute.toml"
    config.write_text(f'[adapters]\nsecrets_file = "{secrets_file}"\n')
    r = _run("serve", "adapters", "--config", str(config), "--nats-url", nats_server.url,
             "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"gpuroute: error: secrets file {secrets_file}: key 'lambda': unknown provider table"
        )
    )


def test_a_typo_in_the_adapters_config_names_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "gpuroute.toml"
    config.write_text('[adapters.runpod]\nendpoint = "ep"\n')
    r = _run("up", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"gpuroute: error: {config}: Object contains unknown field `endpoint` - at "
        "`$.adapters.runpod`"
    )


@pytest.fixture
async def providers(aiohttp_server: Any) -> AsyncIterator[dict[str, Provider]]:
    found = await start_providers(aiohttp_server)
    yield found
    for provider in found.values():
        provider.fake.release.set()


def _config(tmp_path: Path, providers: dict[str, Provider]) -> Path:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(SECRETS_TOML)
    config = tmp_path / "gpuroute.toml"
    config.write_text(f"""
[adapters]
secrets_file = "{secrets_file}"
[adapters.runpod]
endpoint_id = "ep-test"
base_url = "{providers["runpod"].url("/v2")}"
timeout_s = 2.0
[adapters.huggingface]
namespace = "acme"
name = "llm"
management_url = "{providers["huggingface"].url("/v2")}"
timeout_s = 2.0
inference_timeout_s = 2.0
[adapters.replicate]
model = "acme/sdxl"
base_url = "{providers["replicate"].url()}"
timeout_s = 2.0
[adapters.modal]
base_url = "{providers["modal"].url()}"
timeout_s = 2.0
[adapters.retry]
max_attempts = 2
base_delay_s = 0.01
max_delay_s = 0.02
""")
    return config


class _Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base
        self.seen: list[bytes] = []

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else msgspec.json.encode(body)
        async with self.session.request(method, self.base + path, data=data) as r:
            raw = await r.read()
            self.seen.append(raw + repr(dict(r.headers)).encode())
            return r.status, msgspec.json.decode(raw)


async def test_a_known_token_never_leaves_the_process(
    tmp_path: Path, providers: dict[str, Provider]
) -> None:
    data = tmp_path / "data"
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "gpuroute"), "up", "--config", str(_config(tmp_path, providers)),
        "--data-dir", str(data), "--nats-port", "0", "--http-port", str(port),
        stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    assert proc.stderr is not None
    first = (await proc.stderr.readline()).decode()
    stderr = [first]

    async def drain() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            stderr.append(line.decode())

    draining = asyncio.create_task(drain())
    try:
        async with aiohttp.ClientSession() as session:
            client = _Client(session, f"http://127.0.0.1:{port}")
            await _exercise(client, providers)
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 20)
        await draining
    assert code == 0
    text = "".join(stderr)
    with sqlite3.connect(data / "events.db") as db:
        bodies = [bytes(row[0]) for row in db.execute("SELECT body FROM events")]
    assert sum(b'"type":"adapter.submitted"' in body for body in bodies) >= 5
    log = (data / "gpuroute.log").read_text()
    assert '"msg":"adapter.submit"' in log and '"msg":"adapter.poll"' in log
    assert '"msg":"adapter.submit"' in text
    files = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    for secret in SECRETS:
        needle = secret.encode()
        assert not any(needle in body for body in bodies), f"{secret} in an event"
        assert secret not in log and secret not in text
        assert not any(needle in seen for seen in client.seen), f"{secret} in a response"
        assert not any(needle in content for content in files), f"{secret} in {data}"
    # the tokens were really used, so the search above is not vacuous
    assert providers["runpod"].fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert providers["modal"].fake.requests[0].headers["Modal-Secret"] == MODAL_SECRET


async def _exercise(client: _Client, providers: dict[str, Provider]) -> None:
    async def live() -> bool:
        try:
            status, body = await client("GET", "/api/providers/gpu/providers")
        except aiohttp.ClientError:
            return False
        return status == 200 and all(p["mode"] == "live" for p in body["providers"])

    async def gateway_up() -> bool:
        try:
            return (await client("GET", "/api/providers/gpu/providers"))[0] == 200
        except aiohttp.ClientError:
            return False

    await poll(gateway_up, timeout=20)
    # as a user turns it on (NATS is closed to anyone but the services under `up`)
    status, _ = await client("PUT", "/api/flags", {"flags": {ENABLE_PUBLIC_GPU_ADAPTERS: True}})
    assert status == 200
    await poll(live, timeout=10)
    for provider in providers:
        status, submitted = await client(
            "POST",
            "/api/providers/gpu/submit",
            {"provider": provider, "job": {"input": {"prompt": "x"}, "job_id": f"j-{provider}"}},
        )
        assert (status, submitted["dry_run"]) == (200, False), submitted
        remote_id = submitted["id"]
        for _ in range(10):
            status, polled = await client(
                "GET", f"/api/providers/gpu/poll/{remote_id}?provider={provider}"
            )
            if polled["status"] == "done":
                break
        assert polled["status"] == "done"
        await client("POST", f"/api/providers/gpu/cancel/{remote_id}?provider={provider}")
    status, health = await client("POST", "/api/providers/gpu/health")
    assert status == 200 and all(r["ok"] for r in health["results"])
    # a provider that echoes the token in its error: the reason reaches the client redacted
    providers["replicate"].fake.plan(
        "POST /models/acme/sdxl/predictions",
        Scripted(status=401, body={"detail": f"token {TOKEN} is not valid"}),
    )
    status, refused = await client(
        "POST", "/api/providers/gpu/submit", {"provider": "replicate", "job": {"input": {}}}
    )
    assert (status, refused["reason"]) == (502, "HTTP 401: token *** is not valid")
    await client(
        "POST",
        "/api/providers/gpu/simulate",
        {"provider": "runpod", "job": {"input": {}}, "seed": 1},
    )
