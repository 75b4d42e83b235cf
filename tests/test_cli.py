"""The gpuroute command as a user runs it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request

import pytest

from services.runtime.config import load_config
from services.runtime.errors import ConfigError
from tests.support import BIN, gpuroute, lifecycle, wait_for


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gpuroute"), *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", [[], ["up"], ["serve"], ["tail"], ["replay"], ["schema"]])
def test_help(command):
    r = run(*command, "--help")
    assert r.returncode == 0 and "usage: gpuroute" in r.stdout


def test_schema_prints_json_schema_and_subjects():
    schema = json.loads(run("schema").stdout)
    assert "job.submitted" in schema["discriminator"]["mapping"]
    subjects = run("schema", "--subjects").stdout
    assert "svc.heartbeat" in subjects and "job.advised" in subjects


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_serves_health_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    proc = gpuroute("up", "--data-dir", str(tmp_path), "--nats-port", "0",
                    "--http-port", str(port), stderr=subprocess.PIPE)  # fmt: skip
    try:
        first = proc.stderr.readline().decode()  # type: ignore[union-attr]
        assert first.startswith("nats: embedded nats-server with JetStream at nats://127.0.0.1:")

        def healthy():  # type: ignore[no-untyped-def]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    body = json.load(r)
                    return body if {"store", "gateway"} <= set(body["services"]) else None
            except OSError:
                return None

        import asyncio

        body = asyncio.run(wait_for(healthy, timeout=20))
        assert body["ok"] is True and body["store"]["path"] == str(tmp_path / "events.db")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == 0
    assert (tmp_path / "events.db").exists() and (tmp_path / "gpuroute.log").exists()


def test_busy_port_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("up", "--data-dir", str(tmp_path), "--nats-port", str(port))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"gpuroute: error: nats-server: port {port} on 127.0.0.1 is already in use "
        "(pick another with --nats-port, 0 for any free port, or use --nats-url)"
    )
    assert "Traceback" not in r.stderr


def test_bad_config_file_names_the_field(tmp_path):
    bad = tmp_path / "gpuroute.toml"
    bad.write_text('data_dir = "x"\n[http]\nport = "eighty"\n')
    expected = r"gpuroute.toml: Expected `int`, got `str` - at `\$.http.port`"
    with pytest.raises(ConfigError, match=expected):
        load_config(bad)
    bad.write_text("[nats]\nprot = 1\n")
    r = run("up", "--config", str(bad))
    assert r.returncode == 1 and "unknown field `prot`" in r.stderr and "Traceback" not in r.stderr


async def test_tail_prints_stored_then_live_events(bus, store, nats_server):
    first = lifecycle(bus, "job-1")
    await bus.publish_many(first)
    proc = gpuroute("tail", "job.started", "job.succeeded", "--after", "0",
                    "--nats-url", nats_server.url, stdout=subprocess.PIPE)  # fmt: skip
    try:
        import asyncio

        lines = []
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)  # type: ignore[union-attr]
        lines.append(json.loads(line))
        await bus.publish_many(lifecycle(bus, "job-2"))
        for _ in range(3):
            line = await loop.run_in_executor(None, proc.stdout.readline)  # type: ignore[union-attr]
            lines.append(json.loads(line))
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert [(x["event"]["type"], x["event"]["key"]) for x in lines] == [
        ("job.started", "job-1"), ("job.succeeded", "job-1"),
        ("job.started", "job-2"), ("job.succeeded", "job-2"),
    ]  # fmt: skip
    assert [x["seq"] for x in lines] == [3, 4, 7, 8]
