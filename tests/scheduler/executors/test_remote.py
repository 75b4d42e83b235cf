"""The remote executor against the real adapters service (dry run) and the edges
of the adapters' answers (refusal, nobody answering, a provider failure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.adapter_settings import AdaptersSettings, RunPodSettings
from schemas.scheduler_settings import RemoteSettings
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.scheduler.executors import RemoteExecutor
from tests.adapters.stack import start_stack, stop_stack, write_secrets
from tests.scheduler.executors.adapters_standin import AdaptersStandIn
from tests.scheduler.executors.contract import Recorder
from tests.scheduler.executors.test_contract import RemoteHarness

FAST = RemoteSettings(poll_s=0.02, call_timeout_s=2)


async def test_a_dry_run_provider_ends_succeeded_with_dry_run(
    config: Config, store: Any, bus: Bus, tmp_path: Path
) -> None:
    settings = AdaptersSettings(
        secrets_file=str(write_secrets(tmp_path)),
        runpod=RunPodSettings(endpoint_id="ep-1", dry_run=True),
    )
    stack = await start_stack(config, settings, bus)
    try:
        harness = RemoteHarness(tmp_path, AdaptersStandIn(bus, tmp_path), bus)
        run = harness.run("x", payload={"input": {"prompt": "fox"}}, provider="runpod")
        progress = Recorder()
        outcome = await RemoteExecutor(FAST, bus).run(run, progress)
    finally:
        await stop_stack(stack)
    assert (outcome.status, outcome.dry_run, outcome.provider) == ("succeeded", True, "runpod")
    assert outcome.remote_id == "mock-runpod-42" == progress.remote_ids[0]  # the run's seed
    assert ("info", "Simulated completion") in progress.lines


async def test_outputs_logs_and_progress_come_back(bus: Bus, tmp_path: Path) -> None:
    standin = AdaptersStandIn(bus, tmp_path)
    await standin.start()
    harness = RemoteHarness(tmp_path, standin, bus)
    progress = Recorder()
    outcome = await harness.executor.run(harness.run("success"), progress)
    assert outcome.status == "succeeded" and outcome.dry_run is False
    assert [a.name for a in outcome.artifacts] == ["sim-1.png"]
    assert outcome.artifacts[0].path.read_bytes() == b"image bytes"
    assert outcome.details["urls"] == ["https://cdn.example/out.png"]
    assert [line for _, line in progress.lines] == ["loading", "done"]  # each line once
    assert (0.5, 1.0, None) in progress.steps


async def test_a_refusal_is_not_retryable_and_a_provider_failure_is(
    bus: Bus, tmp_path: Path
) -> None:
    standin = AdaptersStandIn(bus, tmp_path)
    await standin.start()
    harness = RemoteHarness(tmp_path, standin, bus)
    refused = await harness.executor.run(
        harness.run("x", payload={"provider": "modal", "input": {"behaviour": "refuse"}}),
        Recorder(),
    )
    assert (refused.status, refused.retryable) == ("failed", False)
    assert "modal refused the job: missing token" in refused.reason
    failed = await harness.executor.run(harness.run("failure"), Recorder())
    assert (failed.retryable, failed.provider, failed.remote_id) == (True, "runpod", "sim-1")


async def test_no_adapters_service_is_a_retryable_failure(bus: Bus, tmp_path: Path) -> None:
    harness = RemoteHarness(tmp_path, AdaptersStandIn(bus, tmp_path), bus)
    outcome = await harness.executor.run(harness.run("success"), Recorder())
    assert (outcome.status, outcome.retryable) == ("failed", True)
    assert "503" in outcome.reason


async def test_an_unknown_provider_is_refused_before_any_call(bus: Bus, tmp_path: Path) -> None:
    harness = RemoteHarness(tmp_path, AdaptersStandIn(bus, tmp_path), bus)
    outcome = await harness.executor.run(
        harness.run("x", payload={"input": {}}, provider="vast"), Recorder()
    )
    assert (outcome.status, outcome.retryable) == ("failed", False)
    assert "provider 'vast' is not one of runpod" in outcome.reason
