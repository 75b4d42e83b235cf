"""``gpuroute submit | jobs | job | cancel`` as a new user types them after ``gpuroute up``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, gpuroute, healthy


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("up")
    config = data / "gpuroute.toml"  # a dry-run provider, as docs/adapters.md says
    config.write_text("[adapters.runpod]\ndry_run = true\n")
    port = free_port()
    proc = gpuroute("up", "--config", str(config), "--data-dir", str(data / "data"),
                    "--nats-port", "0", "--http-port", str(port),
                    stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(url):
            assert proc.poll() is None, "gpuroute up exited"
            assert time.monotonic() < deadline, "gpuroute up did not get healthy in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = gpuroute(args[0], "--url", url, *args[1:], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = proc.communicate(timeout=timeout)
    assert isinstance(out, str) and isinstance(err, str)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _job_id(out: str) -> str:
    return out.splitlines()[0].split()[1]


def test_submit_synthetic_follows_with_progress_and_exits_0(up: str) -> None:
    r = cli(up, "submit", "--executor", "synthetic", "--payload", '{"duration_s":0.5}')
    assert r.returncode == 0, r.stdout + r.stderr
    assert "decision: " in r.stdout and ", rule " in r.stdout, r.stdout
    assert "%" in r.stdout and " succeeded in " in r.stdout and "dry_run" in r.stdout, r.stdout
    job_id = _job_id(r.stdout)
    shown = cli(up, "job", job_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "succeeded"
    listed = cli(up, "jobs", "--state", "succeeded")
    assert listed.returncode == 0 and job_id in listed.stdout


def test_submit_command_echo_hi(up: str) -> None:
    r = cli(up, "submit", "--", "echo", "hi")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| hi" in r.stdout, r.stdout  # the program's output line


def test_submit_remote_dry_run_ends_succeeded_with_dry_run(up: str) -> None:
    r = cli(up, "submit", "--executor", "remote", "--payload",
            '{"provider":"runpod","input":{"prompt":"a cat"}}')  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    view = json.loads(cli(up, "job", _job_id(r.stdout)).stdout)
    assert view["state"] == "succeeded" and view["dry_run"] is True, view


def test_a_failing_job_exits_1_and_cancel_detach(up: str, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text('{"kind":"other","executor":"synthetic","payload":{"outcome":"failure"}}')
    r = cli(up, "submit", str(spec))
    assert r.returncode == 1 and " failed in " in r.stdout, r.stdout + r.stderr
    r = cli(up, "submit", "--detach", "--payload", '{"duration_s":60}')
    assert r.returncode == 0 and "succeeded" not in r.stdout, r.stdout + r.stderr
    cancelled = cli(up, "cancel", _job_id(r.stdout))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled.stderr


def test_errors_are_one_line(up: str, tmp_path: Path) -> None:
    r = cli(up, "submit", "--payload", '{"colour":1}', "--executor", "synthetic", "--kind", "x")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "400" in r.stderr, r.stderr
    r = cli(up, "job", "nope")
    assert r.returncode == 1 and "404" in r.stderr, r.stderr
    r = cli(f"http://127.0.0.1:{free_port()}", "jobs")
    assert r.returncode == 1 and "cannot reach the gateway" in r.stderr, r.stderr
    r = cli(up, "submit", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "cannot read job spec" in r.stderr, r.stderr
