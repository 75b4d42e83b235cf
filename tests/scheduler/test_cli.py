"""``gpuroute submit | jobs | job | cancel`` as a new user types them after ``gpuroute up``."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from services.scheduler.client import workflow_spec
from tests.scheduler.executors.comfy_standin import ComfyStandIn
from tests.support import free_port, gpuroute, healthy

WORKFLOW = {  # ComfyUI API format, as "Save (API)" writes it, with the stand-in's nodes
    "5": {"class_type": "EmptyLatentImage",
          "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "3": {"class_type": "Steps", "inputs": {"steps": 4}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fox"}},
}  # fmt: skip


@pytest.fixture(scope="module")
def comfyui() -> Iterator[str]:
    """The ComfyUI stand-in on its own event loop in a thread; its URL."""
    port, ready, loop = free_port(), threading.Event(), asyncio.new_event_loop()

    def serve() -> None:
        runner = web.AppRunner(ComfyStandIn().app())
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="comfyui-standin")
    thread.start()
    assert ready.wait(10), "the ComfyUI stand-in did not start"
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, comfyui: str) -> Iterator[str]:
    data = tmp_path_factory.mktemp("up")
    config = data / "gpuroute.toml"  # a dry-run provider, as docs/adapters.md says
    config.write_text("[adapters.runpod]\ndry_run = true\n"
                      f'[scheduler.comfyui]\nurl = "{comfyui}"\n')  # fmt: skip
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


def test_submit_a_comfyui_workflow(up: str, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow_api.json"
    workflow.write_text(json.dumps(WORKFLOW))
    r = cli(up, "submit", "--workflow", str(workflow))
    assert r.returncode == 0, r.stdout + r.stderr
    # decided on the workflow's 512x512 image (the default size waits for a GPU)
    assert "decision: cpu, rule cpu_small_job" in r.stdout, r.stdout
    assert "%" in r.stdout and " succeeded in " in r.stdout, r.stdout
    assert "artifacts: fox_00001_.png" in r.stdout, r.stdout
    view = json.loads(cli(up, "job", _job_id(r.stdout)).stdout)
    assert view["executor"] == "comfyui" and view["progress"] == 1.0, view
    assert "job.progress" not in view["history"]  # progress updates the row, not history


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


def test_a_workflow_states_its_spec_only_in_whole_numbers() -> None:
    assert workflow_spec(WORKFLOW) == {"width": 512, "height": 512, "batch": 1, "steps": 4}
    assert workflow_spec(["not", "a", "workflow"]) == {}
    odd = {"1": {"inputs": {"width": True, "height": 2.5, "steps": "9"}}, "2": "x"}
    assert workflow_spec(odd) == {}
