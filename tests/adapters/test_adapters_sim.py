"""Sim mode: seeded transcripts that are byte-identical for the same seed."""

from __future__ import annotations

import msgspec
import pytest

from services.adapters.contract import ProviderJob
from services.adapters.errors import InvalidJobError, UnknownProviderError
from services.adapters.sim import (
    DEFAULT_UNITS,
    PROFILES,
    ProviderProfile,
    SimTranscript,
    encode_transcript,
    simulate,
)

JOB = ProviderJob(input={"prompt": "a red fox", "steps": 30}, job_id="j1")


@pytest.mark.parametrize("provider", sorted(PROFILES))
def test_the_same_seed_gives_byte_identical_transcripts(provider: str) -> None:
    first = encode_transcript(simulate(provider, JOB, seed=42))
    second = encode_transcript(simulate(provider, ProviderJob(**msgspec.structs.asdict(JOB)), 42))
    assert first == second
    decoded = msgspec.json.decode(first, type=SimTranscript)
    assert encode_transcript(decoded) == first


def test_different_seeds_can_differ() -> None:
    transcripts = {encode_transcript(simulate("runpod", JOB, seed)) for seed in range(20)}
    assert len(transcripts) > 1
    outcomes = {simulate("runpod", JOB, seed).decision.cold_start for seed in range(20)}
    assert outcomes == {True, False}


@pytest.mark.parametrize("seed", range(25))
def test_phases_come_in_order_and_times_never_go_back(seed: int) -> None:
    transcript = simulate("huggingface", JOB, seed)
    phases = [event.phase for event in transcript.events]
    assert phases[0] == "queued" and phases[-1] in ("done", "failed")
    assert phases[-1] == transcript.decision.outcome
    assert ("cold_start" in phases) is transcript.decision.cold_start
    assert phases.index("running") > phases.index("queued")
    times = [event.at_ms for event in transcript.events]
    assert times == sorted(times)
    assert transcript.decision.total_ms == times[-1]
    assert transcript.units == 30 and transcript.dry_run is True


def test_the_profile_drives_failures_and_cold_starts() -> None:
    always_fails = ProviderProfile(
        queue_s=(0.0, 0.0), cold_start_s=(1.0, 1.0), warm_probability=1.0,
        failure_rate=1.0, units_per_s=10.0,
    )
    transcript = simulate("modal", JOB, seed=1, profile=always_fails)
    assert transcript.decision.outcome == "failed"
    assert transcript.decision.cold_start is False
    assert "failure" in transcript.decision.reason
    never_warm = msgspec.structs.replace(always_fails, warm_probability=0.0, failure_rate=0.0)
    transcript = simulate("modal", JOB, seed=1, profile=never_warm)
    assert transcript.decision.outcome == "done" and transcript.decision.cold_start
    cold = [e for e in transcript.events if e.phase == "cold_start"]
    running = [e for e in transcript.events if e.phase == "running"]
    assert running[0].at_ms - cold[0].at_ms == 1000
    assert [e.progress_pct for e in transcript.events if e.phase == "progress"] == [25, 50, 75]


def test_job_size_comes_from_steps() -> None:
    assert simulate("replicate", ProviderJob(input={}), 0).units == DEFAULT_UNITS
    assert simulate("replicate", ProviderJob(input={"steps": True}), 0).units == DEFAULT_UNITS
    assert simulate("replicate", ProviderJob(input={"steps": 4}), 0).units == 4


def test_unknown_provider_and_bad_profile_are_errors() -> None:
    with pytest.raises(UnknownProviderError, match="lambda simulate: unknown provider"):
        simulate("lambda", JOB, 1)
    bad = ProviderProfile(
        queue_s=(2.0, 1.0), cold_start_s=(0.0, 1.0), warm_probability=1.5,
        failure_rate=0.0, units_per_s=0.0,
    )
    with pytest.raises(InvalidJobError, match="queue_s must be 0 <= low <= high"):
        simulate("runpod", JOB, 1, profile=bad)
