"""What a user or a stray publisher can get wrong, and how gpuroute answers."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from schemas import encode_event
from services.gateway.service import GatewayService
from services.runtime import follow as follow_module
from services.runtime.bus import Bus
from services.runtime.endpoints import endpoint
from services.runtime.errors import ServiceCallError
from services.runtime.service import Service
from tests.support import BIN, gpuroute, lifecycle

ROOT = Path(__file__).resolve().parents[2]


class NameRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class EchoService(Service):
    name = "echo"

    async def setup(self) -> None:
        async def hello(req: NameRequest) -> dict[str, str]:
            if req.name == "boom":
                raise RuntimeError("kaboom")
            return {"hello": req.name}

        assert self.micro is not None
        await self.micro.add_endpoint(
            name="hello", subject="test.echo.hello", handler=endpoint(NameRequest, hello)
        )


async def test_endpoint_errors_are_replies_and_the_service_survives(config, bus):
    service = EchoService(await Bus.connect(config.nats.url or "", source="echo"), config)
    await service.start()
    try:
        cases = [
            (b"", 400, "missing required field `name`"),
            (b"{not json", 400, "invalid request"),
            (b'{"name": 5}', 400, "Expected `str`, got `int` - at `$.name`"),
            (b'{"name": "x", "nmae": 1}', 400, "unknown field `nmae`"),
            (b'{"name": "boom"}', 500, "RuntimeError: kaboom"),
        ]
        for body, code, text in cases:
            with pytest.raises(ServiceCallError) as e:
                await bus.call_raw("test.echo.hello", body)
            assert (e.value.code, text in e.value.description) == (code, True), e.value
        assert await bus.call_raw("test.echo.hello", b'{"name": "ok"}') == b'{"hello":"ok"}'
    finally:
        await service.stop()
        await service.bus.close()


async def test_garbage_on_stored_subjects_is_skipped_by_followers(store, bus, config):
    gateway = GatewayService(await Bus.connect(config.nats.url or "", source="gateway"), config)
    await gateway.start()
    before = follow_module.malformed_skipped
    try:
        async with aiohttp.ClientSession() as session:
            url = gateway.url + "/api/modder/hooks/ws?subjects=job.>&after=0"
            async with session.ws_connect(url) as ws:
                await bus.publish_many(lifecycle(bus, "job-1")[:1])
                assert (await ws.receive_json(timeout=10))["seq"] == 1
                for junk in (b"garbage", b'{"seq": 99, "event": {"type": "job.started"}}',
                             b'{"seq": 98, "event": 5}'):  # fmt: skip
                    await bus.nc.publish("stored.job.started", junk)
                # a real event with the wrong subject's type is refused too
                event = msgspec.Raw(encode_event(lifecycle(bus, "x")[0]))
                real = msgspec.json.encode({"seq": 97, "event": event})
                await bus.nc.publish("stored.job.failed", real)
                await bus.publish_many(lifecycle(bus, "job-2")[:1])
                msg = await ws.receive_json(timeout=10)
                assert (msg["seq"], msg["event"]["key"]) == (2, "job-2")
        assert follow_module.malformed_skipped - before == 4
    finally:
        await gateway.stop()
        await gateway.bus.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_busy_http_port_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [str(BIN / "gpuroute"), "up", "--data-dir", str(tmp_path), "--nats-port", "0",
             "--http-port", str(port)], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"gpuroute: error: http port {port} on 127.0.0.1 is already in use "
        "(pick another with --http-port)"
    )
    assert "Traceback" not in r.stderr


def test_a_second_gpuroute_on_the_same_data_dir_is_refused(tmp_path):
    first = gpuroute("up", "--data-dir", str(tmp_path), "--nats-port", "0",
                     "--http-port", str(free_port()), stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert first.stderr is not None
        while "running" not in first.stderr.readline().decode():
            assert first.poll() is None
        r = subprocess.run(
            [str(BIN / "gpuroute"), "up", "--data-dir", str(tmp_path), "--nats-port", "0",
             "--http-port", str(free_port())], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 1
        assert re.fullmatch(
            rf"gpuroute: error: data directory {re.escape(str(tmp_path))} is in use by another "
            rf"gpuroute \(pid {first.pid}\); stop it or pass another --data-dir",
            r.stderr.strip(),
        ), r.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(20)
        first.stderr.close()  # type: ignore[union-attr]


def test_sigterm_while_waiting_for_nats_exits_promptly(tmp_path):
    proc = gpuroute("serve", "store", "--nats-url", "nats://127.0.0.1:1",
                    "--data-dir", str(tmp_path), stderr=subprocess.PIPE)  # fmt: skip
    # the log file appears once main() has set up logging (after its SIGTERM handler):
    # from there it goes straight into the connect retry loop, however loaded the machine
    deadline = time.monotonic() + 30
    while not (tmp_path / "gpuroute.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - start < 5
    assert "Traceback" not in proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]


def test_replay_refuses_a_negative_position(tmp_path):
    r = subprocess.run([str(BIN / "gpuroute"), "replay", "--db", str(tmp_path / "x.db"),
                        "--until-seq", "-3"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "--until-seq: must be >= 0, got -3" in r.stderr


async def test_readme_nats_py_example_runs_as_written(store, bus, nats_server, tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1).replace("nats://127.0.0.1:4222", nats_server.url))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    seen: set[str] = set()
    try:
        assert proc.stdout is not None
        for attempt in range(50):  # the example has no ready line: publish until it prints
            await bus.publish_many(lifecycle(bus, f"job-readme-{attempt}")[:1])
            try:
                while True:
                    line = await asyncio.wait_for(proc.stdout.readline(), 0.2)
                    seen.add(line.split()[0].decode())
            except TimeoutError:
                pass
            if {"job.submitted", "stored.job.submitted"} <= seen:
                break
    finally:
        proc.terminate()
        await proc.wait()
    assert {"job.submitted", "stored.job.submitted"} <= seen
