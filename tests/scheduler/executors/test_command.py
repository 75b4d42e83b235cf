"""The command executor: allow-list, no shell, bounded output, environment, workdir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from schemas.scheduler_settings import CommandSettings
from services.scheduler.executors import CommandConfigError, CommandExecutor
from tests.scheduler.executors.contract import Recorder
from tests.scheduler.executors.test_contract import CommandHarness


def _harness(tmp_path: Path, **settings: object) -> CommandHarness:
    harness = CommandHarness(tmp_path)
    harness.executor = CommandExecutor(
        CommandSettings(allow=["echo", "python"], **settings),
        tmp_path,  # type: ignore[arg-type]
    )
    return harness


async def test_echo_hi_runs_with_the_default_settings(tmp_path: Path) -> None:
    harness = CommandHarness(tmp_path)
    harness.executor = CommandExecutor(CommandSettings(), tmp_path)
    progress = Recorder()
    outcome = await harness.executor.run(harness.run("x", payload=["echo", "hi"]), progress)
    assert (outcome.status, outcome.exit_code) == ("succeeded", 0)
    assert progress.lines == [("stdout", "hi")]


@pytest.mark.parametrize("argv0", ["sh", "echo hi; rm -rf /", "/bin/sh", "python3", "../echo"])
async def test_nothing_off_the_allow_list_runs(tmp_path: Path, argv0: str) -> None:
    harness = CommandHarness(tmp_path)
    harness.executor = CommandExecutor(CommandSettings(), tmp_path)
    run = harness.run("x", payload=[argv0, "-c", "true"])
    outcome = await harness.executor.run(run, Recorder())
    assert (outcome.status, outcome.retryable) == ("failed", False)
    assert f"program {argv0!r} is not on the allow-list ([scheduler.command] allow: echo)" in (
        outcome.reason
    )


async def test_an_allowed_program_by_its_absolute_path_runs(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    outcome = await harness.executor.run(
        harness.run("x", payload={"argv": [sys.executable, "-c", "print(1)"]}), Recorder()
    )
    assert outcome.status == "succeeded", outcome.reason


async def test_output_is_cut_counted_and_summed_up(tmp_path: Path) -> None:
    harness = _harness(tmp_path, max_line_bytes=16, max_lines=5)
    code = "print('x' * 100000 + 'END'); [print(i) for i in range(50)]"
    progress = Recorder()
    outcome = await harness.executor.run(harness.run("x", payload=["python", "-c", code]), progress)
    assert outcome.status == "succeeded"
    lines = [line for _, line in progress.lines]
    assert lines[0] == "x" * 16 + "...[cut]"
    assert lines[1:5] == ["0", "1", "2", "3"]
    assert "46 output lines not reported" in lines[-1] and len(lines) == 6


async def test_lines_over_the_rate_are_dropped_not_queued(tmp_path: Path) -> None:
    harness = _harness(tmp_path, lines_per_s=0.001, lines_burst=3)
    progress = Recorder()
    code = "[print(i) for i in range(20)]"
    await harness.executor.run(harness.run("x", payload=["python", "-c", code]), progress)
    assert [line for _, line in progress.lines][:3] == ["0", "1", "2"]
    assert "17 output lines not reported" in progress.lines[-1][1]


async def test_secrets_in_the_environment_do_not_reach_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUROUTE_RUNPOD_API_KEY", "sk-secret")
    harness = _harness(tmp_path)
    code = "import os; print(sorted(os.environ))"
    progress = Recorder()
    await harness.executor.run(harness.run("x", payload=["python", "-c", code]), progress)
    names = progress.lines[0][1]
    assert "GPUROUTE_RUNPOD_API_KEY" not in names and "GPUROUTE_JOB_ID" in names


async def test_files_left_in_the_artifacts_folder_are_the_artifacts(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    code = "import os; open(os.environ['GPUROUTE_ARTIFACTS'] + '/out.txt', 'w').write('hi')"
    run = harness.run("x", payload=["python", "-c", code])
    outcome = await harness.executor.run(run, Recorder())
    [artifact] = outcome.artifacts
    assert (artifact.name, artifact.size, artifact.path.parent) == (
        "out.txt",
        2,
        run.workdir / "artifacts",
    )
    assert (run.workdir / "artifacts").stat().st_mode & 0o777 == 0o700


async def test_exit_codes_and_signals(tmp_path: Path) -> None:
    harness = _harness(tmp_path)
    tempfail = await harness.executor.run(
        harness.run("x", payload=["python", "-c", "raise SystemExit(75)"]), Recorder()
    )
    killed = await harness.executor.run(
        harness.run("x", payload=["python", "-c", "import os; os.kill(os.getpid(), 9)"]),
        Recorder(),
    )
    assert (tempfail.retryable, tempfail.exit_code) == (True, 75)
    assert (killed.retryable, killed.exit_code) == (True, -9)
    assert "killed by SIGKILL" in killed.reason


def test_a_workdir_outside_the_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandConfigError, match="outside the data directory"):
        CommandExecutor(CommandSettings(workdir="../elsewhere"), tmp_path)


async def test_health_names_what_is_allowed_and_what_does_not_resolve(tmp_path: Path) -> None:
    executor = CommandExecutor(CommandSettings(allow=["echo", "no-such-program-x"]), tmp_path)
    health = await executor.health()
    assert (health["allow"], health["unresolved"]) == (["echo"], ["no-such-program-x"])
