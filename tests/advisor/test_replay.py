"""``gpuroute replay --what-if``: on a log produced by a real run (store +
advisor + submitted jobs, with flags, telemetry, providers and queue depth
changing along the way), the same config changes nothing and a price change
moves exactly the decisions it should."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import msgspec
import pytest

from schemas import make_event
from schemas.advisor import AdvisedInputs, QueueDepthChanged
from schemas.flags import FlagsChanged
from schemas.jobs import JobSpec, JobSubmitted
from schemas.providers import ProviderUpserted
from services.advisor.registry import parse_profile
from tests.advisor.service_support import (
    NO_GPU,
    ONE_GPU,
    PROFILE,
    advised,
    running_advisor,
    stored_events,
)
from tests.support import BIN, lifecycle

OPS_FILE = Path(__file__).resolve().parents[2] / "ops" / "advisor.toml"
BIG = {"width": 1024, "height": 1024, "batch": 2}
VARIED = [
    BIG,
    {"width": 512, "height": 512},
    {"kind": "llm", "model": "llama-3-8b"},
    {"kind": "video", "width": 512, "height": 512, "frames": 24},
    {"kind": "speech", "model": "whisper-large-v3"},
    {"width": 2048, "height": 2048, "batch": 2},  # too big for the recorded GPU
]


def replay(db: Path, file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gpuroute"), "replay", "--what-if", str(file), "--db", str(db)],
        capture_output=True, text=True,
    )  # fmt: skip


def what_if(db: Path, file: Path) -> tuple[int, int, str]:
    run = replay(db, file)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    m = re.search(r"(\d+) of (\d+) decisions change", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), out


@pytest.fixture
async def log(store, bus, config, stored) -> Path:  # type: ignore[no-untyped-def]
    """A real run: 5 phases, each changing one input, with varied jobs in each."""
    n = 0

    async def jobs(phase: str) -> None:
        nonlocal n
        keys = []
        for spec in VARIED:
            n += 1
            keys.append(f"{phase}-{n}")
            await bus.emit(JobSubmitted(spec=JobSpec(**spec)), key=keys[-1])  # type: ignore[arg-type]
        await advised(stored, keys)

    async with running_advisor(config, NO_GPU) as advisor:
        await jobs("off")
        flags = bus.event(FlagsChanged(flags={"features.enable_compute": True}), key="flags")
        assert await advisor.follower.publish_and_wait([flags], 10)
        await jobs("on")
        sample = msgspec.structs.replace(ONE_GPU, sample_id="gpu-sample")
        sampled = make_event(sample, id="gpu-sample", key="host", ts=2.0, source="test")
        assert await advisor.follower.publish_and_wait([sampled], 10)
        await jobs("gpu")
        box = parse_profile(msgspec.json.encode(PROFILE))
        assert await advisor.follower.publish_and_wait(
            [bus.event(ProviderUpserted(profile=box), key=box.id)], 10
        )
        await bus.emit(FlagsChanged(flags={"features.enable_compute": True}), key="flags")
        await jobs("box")
        depth = bus.event(QueueDepthChanged(depth=8), key="remote")
        assert await advisor.follower.publish_and_wait([depth], 10)
        await jobs("full")
    await bus.publish_many(lifecycle(bus, "hand-written"))  # a job.advised with no inputs
    await stored.count(31, "job.advised")
    return Path(config.events_db)


def decisions(db: Path) -> dict[str, AdvisedInputs]:
    return {
        e.key: e.payload.replayable
        for _, e in stored_events(db, "job.advised")
        if e.payload.replayable
    }


async def test_same_config_changes_no_decision(log):
    changed, total, out = what_if(log, OPS_FILE)
    assert (changed, total) == (0, 30)
    assert "difference +0.0000 USD" in out
    assert "skipped 1 job.advised without recorded inputs" in out
    assert "could not be rebuilt" not in out
    targets = {i.decision.target for i in decisions(log).values()}
    assert targets == {"local", "cpu", "remote", "wait"}  # the log exercises every rule


async def test_a_price_rise_moves_the_decisions_it_should(log, tmp_path):
    on_box = sorted(k for k, i in decisions(log).items() if i.decision.provider_id == "studio-box")
    assert on_box and all(k.startswith("box-") for k in on_box)
    dearer = tmp_path / "dearer.toml"
    dearer.write_text('[[price_overrides]]\nprovider = "studio-box"\nmultiplier = 100.0\n')
    changed, total, out = what_if(log, dearer)
    assert (changed, total) == (len(on_box), 30)
    moved = re.findall(
        r"^  (\S+): remote:studio-box \(remote_cheapest\) -> remote:(\S+) ", out, re.M
    )
    assert sorted(job for job, _ in moved) == on_box
    assert all(new != "studio-box" for _, new in moved)
    assert re.search(r"difference \+\d+\.\d{4} USD", out) and "difference +0.0000" not in out


async def test_a_threshold_change_moves_waiting_jobs(log, tmp_path):
    roomy = tmp_path / "roomy.toml"
    roomy.write_text("[rules.remote]\nqueue_saturated_at = 100\n")
    changed, _, out = what_if(log, roomy)
    full = {
        k
        for k, i in decisions(log).items()
        if k.startswith("full-") and i.decision.target == "wait"
    }
    assert full and changed == len(full)
    assert all(f"  {k}: wait (wait_for_local_gpu) -> remote:" in out for k in full)


async def test_an_override_of_a_provider_the_log_never_had_is_an_error(log, tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text(
        '[[price_overrides]]\nprovider = "modal"\nmultiplier = 2.0\n'
        '[[price_overrides]]\nprovider = "nope"\nmultiplier = 2.0\n'
    )
    run = replay(log, typo)
    assert run.returncode == 1 and run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith(f"gpuroute: error: {typo}: [[price_overrides]] #2")
    assert "provider 'nope', which this log never registered" in line
    assert "studio-box" in line  # the providers it did register, to spot the typo
