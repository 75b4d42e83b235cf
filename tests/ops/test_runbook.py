"""docs/runbook.md's commands work as written: every ``gpuroute`` and ``curl``
line of its ``sh`` blocks runs against a fresh ``gpuroute up`` (ports swapped,
the data directory is ``./.gpuroute`` of the working directory, as the runbook
assumes)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import BIN, free_port, healthy

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (ROOT / "docs" / "runbook.md").read_text()
    lines = [line.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)
             for line in block.splitlines()]  # fmt: skip
    return [line for line in lines if line.startswith(("gpuroute ", "curl "))]


def test_the_runbook_has_commands_for_tuning_and_rollback() -> None:
    commands = _commands()
    assert any(c.startswith("gpuroute doctor") for c in commands)
    assert sum("budgets/apply" in c for c in commands) >= 2  # a change and its rollback


@pytest.mark.timeout(180)
def test_every_runbook_command_runs_against_a_fresh_up(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GPUROUTE_URL": url}
    up = subprocess.Popen(
        [str(BIN / "gpuroute"), "up", "--nats-port", "0", "--http-port", str(port)],
        cwd=tmp_path, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not healthy(url):
            assert up.poll() is None and time.monotonic() < deadline, "up did not get healthy"
            time.sleep(0.2)
        for line in _commands():
            argv = shlex.split(line.replace("127.0.0.1:8000", f"127.0.0.1:{port}"),
                               comments=True)  # fmt: skip
            if argv[0] == "gpuroute":
                argv[0] = str(BIN / "gpuroute")
            else:
                argv[1:1] = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "30"]
            r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
            if argv[0] == "curl":
                assert r.stdout.isdigit() and int(r.stdout) < 400, (line, r.stdout)
            else:
                assert r.returncode == 0, (line, r.stdout[-2000:], r.stderr[-2000:])
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
