"""The comfyui executor against the local ComfyUI stand-in: outputs, 400s, a dropped
socket, cancel touching only its own prompt, health."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from schemas.scheduler_settings import ComfyUISettings
from services.scheduler.executors import ComfyUIExecutor
from services.scheduler.executors.comfyui import prompt_id_for
from tests.scheduler.executors.comfy_standin import PNG, ComfyStandIn
from tests.scheduler.executors.contract import Recorder
from tests.scheduler.executors.test_contract import ComfyHarness
from tests.support import poll


@pytest.fixture
async def comfy(tmp_path: Any, aiohttp_server: Callable[..., Any]) -> AsyncIterator[ComfyHarness]:
    standin = ComfyStandIn()
    server = await aiohttp_server(standin.app())
    harness = ComfyHarness(tmp_path, standin, str(server.make_url("")).rstrip("/"))
    yield harness
    await harness.executor.aclose()


async def test_outputs_are_fetched_into_artifacts_under_safe_names(comfy: ComfyHarness) -> None:
    workflow = {
        "1": {"class_type": "Steps", "inputs": {"steps": 3}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "../../evil"}},
    }
    run, progress = comfy.run("x", payload=workflow), Recorder()
    outcome = await comfy.executor.run(run, progress)
    assert outcome.status == "succeeded", outcome.reason
    [artifact] = outcome.artifacts
    assert artifact.path == run.workdir / "artifacts" / "evil_00001_.png"
    assert artifact.sha256 == hashlib.sha256(PNG).hexdigest() and artifact.size == len(PNG)
    assert artifact.content_type == "image/png"
    assert progress.steps == [(1.0, 3.0, "1"), (2.0, 3.0, "1"), (3.0, 3.0, "1")]
    assert progress.remote_ids == [prompt_id_for(run)] and outcome.remote_id == prompt_id_for(run)


async def test_a_400_names_the_node_and_the_error_and_is_not_retryable(
    comfy: ComfyHarness,
) -> None:
    workflow = {"1": {"class_type": "Steps"}, "7": {"class_type": "KSamplerTypo"}}
    outcome = await comfy.executor.run(comfy.run("x", payload=workflow), Recorder())
    assert (outcome.status, outcome.retryable) == ("failed", False)
    assert "Prompt outputs failed validation" in outcome.reason
    assert "node 7 (KSamplerTypo): Node class not found: KSamplerTypo" in outcome.reason


async def test_a_dropped_socket_still_ends_from_the_history(comfy: ComfyHarness) -> None:
    run, progress = comfy.run("slow"), Recorder()
    task = asyncio.create_task(comfy.executor.run(run, progress))
    await comfy.started(run, progress)
    await comfy.standin.drop_sockets()
    comfy.standin.release()
    outcome = await task
    assert outcome.status == "succeeded", outcome.reason


async def test_cancel_of_a_pending_prompt_leaves_the_running_one_alone(
    comfy: ComfyHarness,
) -> None:
    other_run, other_progress = comfy.run("slow"), Recorder()
    other = asyncio.create_task(comfy.executor.run(other_run, other_progress))
    await comfy.started(other_run, other_progress)
    mine = comfy.run("queued")
    task = asyncio.create_task(comfy.executor.run(mine, Recorder()))
    # the stand-in's in-memory queue: nothing announces it
    await poll(lambda: any(p[0] == prompt_id_for(mine) for p in comfy.standin.pending))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert comfy.standin.running == prompt_id_for(other_run)  # still running
    assert ("queue", {"delete": [prompt_id_for(mine)]}) in comfy.standin.calls
    comfy.standin.release()
    assert (await other).status == "succeeded"


async def test_health_reports_vram_from_system_stats(comfy: ComfyHarness) -> None:
    health = await comfy.executor.health()
    assert health["ok"] is True
    assert health["devices"] == [
        {
            "name": "cuda:0 Stand-in",
            "type": "cuda",
            "vram_total": 24 * 1024**3,
            "vram_free": 20 * 1024**3,
        }
    ]


async def test_no_server_is_a_retryable_failure_and_unhealthy(comfy: ComfyHarness) -> None:
    executor = ComfyUIExecutor(ComfyUISettings(url="http://127.0.0.1:9", request_timeout_s=2))
    try:
        outcome = await executor.run(comfy.run("success"), Recorder())
        health = await executor.health()
    finally:
        await executor.aclose()
    assert (outcome.status, outcome.retryable) == ("failed", True)
    assert "ComfyUI at http://127.0.0.1:9" in outcome.reason
    assert health["ok"] is False
