"""The executor contract (``contract.py``) run against each of the four executors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from schemas.scheduler_settings import (
    ComfyUISettings,
    CommandSettings,
    RemoteSettings,
    SyntheticSettings,
)
from services.runtime.bus import Bus
from services.scheduler.executors import (
    ComfyUIExecutor,
    CommandExecutor,
    RemoteExecutor,
    SyntheticExecutor,
)
from services.scheduler.executors.base import Run
from services.scheduler.executors.comfyui import prompt_id_for
from tests.scheduler.executors.adapters_standin import AdaptersStandIn
from tests.scheduler.executors.comfy_standin import ComfyStandIn
from tests.scheduler.executors.contract import Case, ExecutorContract, Harness, Recorder
from tests.support import poll

Was = Literal["queued", "running"]


# --- synthetic ----------------------------------------------------------------------


class SyntheticHarness(Harness):
    failure_text = "synthetic failure"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.executor = SyntheticExecutor(SyntheticSettings())

    def payload(self, case: Case) -> Any:
        return {
            "success": {"duration_s": 0.05, "steps": 5},
            "failure": {"duration_s": 0, "outcome": "failure"},
            "slow": {"duration_s": 60, "steps": 600},
            "queued": {"duration_s": 60},
        }[case]

    async def undone(self, run: Run, progress: Recorder, was: Was) -> None:
        reported = progress.count
        for _ in range(3):
            await asyncio.sleep(0)  # a sleeping step would wake here if it were still going
        assert progress.count == reported  # nothing runs on after a cancel


class TestSyntheticContract(ExecutorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return SyntheticHarness(tmp_path)


# --- command ------------------------------------------------------------------------

FAIL = "import sys; sys.stderr.write('bad thing\\n'); sys.exit(3)"
SLOW = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("child.pid", "w").write(str(child.pid))
print("ready", flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class CommandHarness(Harness):
    failure_text = "exited with code 3: bad thing"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.executor = CommandExecutor(CommandSettings(allow=["echo", "python"]), workdir)

    def payload(self, case: Case) -> Any:
        return {
            "success": ["python", "-c", "print('step 1'); print('step 2')"],
            "failure": ["python", "-c", FAIL],
            "slow": ["python", "-c", SLOW],
            "queued": ["python", "-c", "open('started', 'w')"],
        }[case]

    async def started(self, run: Run, progress: Recorder) -> None:
        await progress.wait(lambda: ("stdout", "ready") in progress.lines)

    async def undone(self, run: Run, progress: Recorder, was: Was) -> None:
        if was == "queued":
            assert not (run.workdir / "started").exists()
            return
        pids = [int(progress.remote_ids[0].removeprefix("pid:")),
                int((run.workdir / "child.pid").read_text())]  # fmt: skip
        await poll(lambda: all(_gone(pid) for pid in pids), timeout=5)  # processes: no event


class TestCommandContract(ExecutorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Harness:
        return CommandHarness(tmp_path)


# --- comfyui ------------------------------------------------------------------------


class ComfyHarness(Harness):
    failure_text = "node 2 (Fail): RuntimeError: sampler exploded"

    def __init__(self, workdir: Path, standin: ComfyStandIn, url: str) -> None:
        super().__init__(workdir)
        self.standin = standin
        self.executor = ComfyUIExecutor(ComfyUISettings(url=url, poll_s=0.02))

    def payload(self, case: Case) -> Any:
        return {
            "success": {"1": {"class_type": "Steps", "inputs": {"steps": 4}},
                        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out"}}},
            "failure": {"1": {"class_type": "Steps", "inputs": {"steps": 1}},
                        "2": {"class_type": "Fail", "inputs": {"message": "sampler exploded"}}},
            "slow": {"1": {"class_type": "Hold"}},
            "queued": {"1": {"class_type": "Steps"}},
        }[case]  # fmt: skip

    def bad_payload(self) -> Any:
        return {"1": {"inputs": {}}}  # no class_type

    async def queued(self, run: Run, progress: Recorder) -> None:
        self.standin.gate.clear()
        prompt_id = prompt_id_for(run)
        # the stand-in's in-memory queue: nothing announces it
        await poll(lambda: any(p[0] == prompt_id for p in self.standin.pending))

    async def undone(self, run: Run, progress: Recorder, was: Was) -> None:
        prompt_id = prompt_id_for(run)
        assert ("queue", {"delete": [prompt_id]}) in self.standin.calls or was == "running"
        assert ("interrupt", {"prompt_id": prompt_id}) in self.standin.calls
        assert all(body.get("prompt_id") for kind, body in self.standin.calls
                   if kind == "interrupt"), "a global interrupt was sent"  # fmt: skip
        assert not any(p[0] == prompt_id for p in self.standin.pending)
        if was == "running":
            await poll(lambda: prompt_id in self.standin.history)  # the stand-in's memory
            assert self.standin.history[prompt_id]["status"]["status_str"] == "error"


class TestComfyUIContract(ExecutorContract):
    @pytest.fixture
    async def harness(
        self, tmp_path: Path, aiohttp_server: Callable[..., Any]
    ) -> AsyncIterator[Harness]:
        standin = ComfyStandIn()
        server = await aiohttp_server(standin.app())
        h = ComfyHarness(tmp_path, standin, str(server.make_url("")).rstrip("/"))
        yield h
        await h.executor.aclose()


# --- remote -------------------------------------------------------------------------


class RemoteHarness(Harness):
    failure_text = "ended failed: CUDA out of memory"

    def __init__(self, workdir: Path, standin: AdaptersStandIn, bus: Bus) -> None:
        super().__init__(workdir)
        self.standin = standin
        self.executor = RemoteExecutor(RemoteSettings(poll_s=0.02, call_timeout_s=2), bus)

    def payload(self, case: Case) -> Any:
        behaviour = {"success": "ok", "failure": "fail", "slow": "hold", "queued": "queued"}
        return {"provider": "runpod", "input": {"behaviour": behaviour[case]}}

    async def queued(self, run: Run, progress: Recorder) -> None:
        await progress.wait(lambda: progress.remote_ids)

    async def undone(self, run: Run, progress: Recorder, was: Was) -> None:
        assert progress.remote_ids and self.standin.cancelled() == progress.remote_ids


class TestRemoteContract(ExecutorContract):
    @pytest.fixture
    async def harness(self, tmp_path: Path, bus: Bus) -> Harness:
        files = tmp_path / "adapters"
        files.mkdir()
        standin = AdaptersStandIn(bus, files)
        await standin.start()
        return RemoteHarness(tmp_path, standin, bus)
