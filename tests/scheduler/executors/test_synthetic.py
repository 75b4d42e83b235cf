"""The synthetic executor: seeded flakiness, bounds, dry run."""

from __future__ import annotations

from pathlib import Path

from schemas.scheduler_settings import SchedulerSettings, SyntheticSettings
from services.scheduler.executors import SyntheticExecutor, build_executors
from services.scheduler.executors.base import Run
from tests.scheduler.executors.contract import Recorder
from tests.scheduler.executors.test_contract import SyntheticHarness


async def test_flaky_fails_on_the_same_attempts_every_time(tmp_path: Path) -> None:
    harness = SyntheticHarness(tmp_path)
    payload = {"outcome": "flaky", "failure_rate": 0.5}

    async def outcomes() -> list[str]:
        found = []
        for attempt in range(1, 21):
            run = harness.run("x", payload=payload)
            run = Run(**{**run.__dict__, "attempt": attempt})
            found.append((await harness.executor.run(run, Recorder())).status)
        return found

    first, again = await outcomes(), await outcomes()
    assert first == again and {"succeeded", "failed"} == set(first)


async def test_every_outcome_says_dry_run_and_bounds_are_named(tmp_path: Path) -> None:
    harness = SyntheticHarness(tmp_path)
    harness.executor = SyntheticExecutor(SyntheticSettings(max_duration_s=5))
    ok = await harness.executor.run(harness.run("x", payload={}), Recorder())
    long = await harness.executor.run(harness.run("x", payload={"duration_s": 6}), Recorder())
    assert (ok.status, ok.dry_run, ok.details["synthetic"]) == ("succeeded", True, True)
    assert long.status == "failed" and long.dry_run
    assert "duration_s 6 is over the limit of 5 ([scheduler.synthetic] max_duration_s)" in (
        long.reason
    )


def test_build_executors_gives_the_four_by_name(tmp_path: Path) -> None:
    executors = build_executors(SchedulerSettings(), tmp_path, caller=object())  # type: ignore[arg-type]
    assert sorted(executors) == ["comfyui", "command", "remote", "synthetic"]
    assert all(name == e.name for name, e in executors.items())
