"""The gpuroute command as a user runs it."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from services.cli import DEFAULT_NATS_URL, nats_url
from services.runtime.config import load_config
from services.runtime.errors import ConfigError
from services.runtime.runner import NATS_URL_FILE
from tests.support import BIN, gpuroute, lifecycle, poll


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

        body = asyncio.run(poll(healthy, timeout=20))
        assert body["ok"] is True and body["store"]["path"] == str(tmp_path / "events.db")
        url_file = tmp_path / NATS_URL_FILE  # so tail, serve and doctor find the server
        assert url_file.read_text() == first.split(" at ")[1].strip() + "\n"
        assert url_file.stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == 0
    assert (tmp_path / "events.db").exists() and (tmp_path / "gpuroute.log").exists()
    assert not (tmp_path / NATS_URL_FILE).exists()  # a clean stop removes it


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


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["up", "--log-level", "LOUD"], "--log-level"),
        (["up", "--http-port", "-5"], "--http-port"),
        (["up", "--http-port", "70000"], "--http-port"),
        (["up", "--nats-port", "-1"], "--nats-port"),
        (["up", "--nats-port", "65536"], "--nats-port"),
        (["serve", "advisor", "--http-port", "eighty"], "--http-port"),
        (["tail", "--after", "-1"], "--after"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_and_exit_2(tmp_path, args, option):
    data = tmp_path / "data"
    r = run(*args, "--data-dir", str(data)) if args[0] != "tail" else run(*args)
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"gpuroute {args[0]}: error: argument {option}: ")
    assert not data.exists()  # refused before anything started


def test_a_bad_log_level_in_the_config_file_names_file_and_key(tmp_path):
    """A bad value inside a file is a config error (exit 1, like every other bad
    config value), not a usage error (exit 2)."""
    bad = tmp_path / "gpuroute.toml"
    bad.write_text('log_level = "LOUD"\n')
    r = run("up", "--config", str(bad), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"gpuroute: error: {bad}: ") and "`$.log_level`" in line
    assert "WARNING" in line and not (tmp_path / "data").exists()


def test_version_is_the_package_version():
    import importlib.metadata

    from services.runtime.service import VERSION

    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"gpuroute {importlib.metadata.version('gpuroute')}"
    assert VERSION == importlib.metadata.version("gpuroute")


@pytest.mark.parametrize("command", [["tail"], ["serve", "advisor"]])
def test_no_nats_is_one_line_within_2_s(tmp_path, command):
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    r = run(*command, "--nats-url", url, "--data-dir", str(tmp_path))
    took = time.monotonic() - started
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gpuroute: error: cannot connect to NATS at {url}")
    assert "Traceback" not in r.stderr
    assert took < 4.0  # a 2 s deadline plus the interpreter's start


async def test_tail_finds_the_url_that_up_wrote(bus, store, nats_server, tmp_path):
    data = tmp_path / "up-data"
    data.mkdir()
    (data / NATS_URL_FILE).write_text(nats_server.url + "\n")
    await bus.publish_many(lifecycle(bus, "job-1"))
    proc = gpuroute("tail", "--after", "0", "--data-dir", str(data), stdout=subprocess.PIPE)
    try:
        import asyncio

        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, proc.stdout.readline)  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert json.loads(line)["event"]["key"] == "job-1"


def test_nats_url_precedence(tmp_path):
    """The flag, then <data-dir>/nats.url, then the default."""
    assert nats_url(None, tmp_path) == DEFAULT_NATS_URL
    (tmp_path / NATS_URL_FILE).write_text("nats://127.0.0.1:4333\n")
    assert nats_url(None, tmp_path) == "nats://127.0.0.1:4333"
    assert nats_url("nats://elsewhere:4222", tmp_path) == "nats://elsewhere:4222"
    (tmp_path / NATS_URL_FILE).write_text("\n")  # empty: as if absent
    assert nats_url(None, tmp_path) == DEFAULT_NATS_URL


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ([], "gpuroute up\n"),
        (["HTTP_PORT=8080", "NATS_PORT=0"], "gpuroute up --http-port 8080 --nats-port 0\n"),
    ],
)
def test_make_run_takes_ports(variables, expected):
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(root), "run", *variables],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(expected)
