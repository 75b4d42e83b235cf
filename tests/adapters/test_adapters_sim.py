"""Sim mode: seeded transcripts that are byte-identical for the same seed."""

from __future__ import annotations

import math
import random
import re

import msgspec
import pytest

from schemas.adapters import (
    SIM_MAX_SECONDS,
    SIM_MAX_UNITS,
    SIM_MAX_UNITS_PER_S,
    SIM_MIN_UNITS_PER_S,
    SimulateBody,
)
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
        queue_s=(0.0, 0.0),
        cold_start_s=(1.0, 1.0),
        warm_probability=1.0,
        failure_rate=1.0,
        units_per_s=10.0,
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
        queue_s=(2.0, 1.0),
        cold_start_s=(0.0, 1.0),
        warm_probability=1.5,
        failure_rate=0.0,
        units_per_s=0.0,
    )
    with pytest.raises(InvalidJobError, match="queue_s must be 0 <= low <= high"):
        simulate("runpod", JOB, 1, profile=bad)


# --- bounds: no value a profile may hold can overflow ---------------------------------

PROFILE = {
    "queue_s": [0, 1],
    "cold_start_s": [0, 1],
    "warm_probability": 0.5,
    "failure_rate": 0.0,
    "units_per_s": 1,
}


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("queue_s", [0, 1e308], "$.queue_s[1]"),
        ("cold_start_s", [0, 1e308], "$.cold_start_s[1]"),
        ("queue_s", [-1, 1], "$.queue_s[0]"),
        ("cold_start_s", [0, 86_400.5], "$.cold_start_s[1]"),
        ("warm_probability", 1.5, "$.warm_probability"),
        ("failure_rate", -0.1, "$.failure_rate"),
        ("units_per_s", 0, "$.units_per_s"),
        ("units_per_s", 1e-300, "$.units_per_s"),
        ("units_per_s", 1e308, "$.units_per_s"),
    ],
)  # fmt: skip
def test_an_absurd_profile_value_is_refused_at_decode_naming_the_field(
    field: str, value: object, path: str
) -> None:
    raw = msgspec.json.encode({**PROFILE, field: value})
    with pytest.raises(msgspec.ValidationError, match=re.escape(path)):
        msgspec.json.decode(raw, type=ProviderProfile)


@pytest.mark.parametrize("field", ["queue_s", "cold_start_s", "units_per_s", "failure_rate"])
def test_json_infinity_is_refused_at_decode(field: str) -> None:
    value = b"[0, 1e309]" if field.endswith("_s") and field != "units_per_s" else b"1e309"
    raw = msgspec.json.encode({k: v for k, v in PROFILE.items() if k != field})
    raw = raw[:-1] + b',"' + field.encode() + b'":' + value + b"}"
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"$.{field}")):
        msgspec.json.decode(raw, type=ProviderProfile)


def _extreme_profiles() -> list[ProviderProfile]:
    rng = random.Random(5)
    edges = [0.0, SIM_MAX_SECONDS]
    found = [
        ProviderProfile(
            queue_s=(low, SIM_MAX_SECONDS),
            cold_start_s=(low, SIM_MAX_SECONDS),
            warm_probability=warm,
            failure_rate=fail,
            units_per_s=speed,
        )
        for low in edges
        for warm in (0.0, 1.0)
        for fail in (0.0, 1.0)
        for speed in (SIM_MIN_UNITS_PER_S, SIM_MAX_UNITS_PER_S)
    ]
    for _ in range(50):
        q = sorted(rng.uniform(0, SIM_MAX_SECONDS) for _ in range(2))
        c = sorted(rng.uniform(0, SIM_MAX_SECONDS) for _ in range(2))
        found.append(ProviderProfile(
            queue_s=(q[0], q[1]), cold_start_s=(c[0], c[1]), warm_probability=rng.random(),
            failure_rate=rng.random(),
            units_per_s=rng.uniform(SIM_MIN_UNITS_PER_S, SIM_MAX_UNITS_PER_S),
        ))  # fmt: skip
    return found


@pytest.mark.parametrize("steps", [1, SIM_MAX_UNITS])
def test_every_admitted_profile_gives_finite_times_that_encode(steps: int) -> None:
    job = ProviderJob(input={"steps": steps})
    for seed, profile in enumerate(_extreme_profiles()):
        # the profile survives a JSON round trip, i.e. the decoder admits it too
        raw = msgspec.json.encode(profile)
        assert msgspec.json.decode(raw, type=ProviderProfile) == profile
        transcript = simulate("modal", job, seed, profile=profile)
        times = [event.at_ms for event in transcript.events]
        assert times == sorted(times) and 0 <= times[-1] < 2**53
        assert msgspec.json.decode(encode_transcript(transcript), type=SimTranscript)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"queue_s": (0.0, math.inf)}, "queue_s must be 0 <= low <= high <= 86400"),
        ({"cold_start_s": (math.nan, 1.0)}, "cold_start_s must be"),
        ({"cold_start_s": (0.0, 1e308)}, "cold_start_s must be"),
        ({"warm_probability": math.nan}, "warm_probability must lie in [0, 1]"),
        ({"failure_rate": math.inf}, "failure_rate must lie in [0, 1]"),
        ({"units_per_s": math.nan}, "units_per_s must lie in [0.001, 1e+06]"),
        ({"units_per_s": 5e-324}, "units_per_s must lie in"),
        ({"units_per_s": math.inf}, "units_per_s must lie in"),
    ],
)  # fmt: skip
def test_a_profile_built_in_code_past_its_bounds_is_an_invalid_job(
    change: dict[str, object], needle: str
) -> None:
    """msgspec checks bounds only when decoding; ``simulate`` checks them itself, so a
    profile built in code is a clear error, never an OverflowError or a NaN time."""
    bad = msgspec.structs.replace(PROFILES["modal"], **change)
    with pytest.raises(InvalidJobError, match=re.escape(needle)):
        simulate("modal", JOB, 1, profile=bad)


def test_a_job_too_large_to_simulate_is_an_invalid_job() -> None:
    huge = ProviderJob(input={"steps": SIM_MAX_UNITS + 1})
    with pytest.raises(InvalidJobError, match=r"job\.input\.steps must be at most"):
        simulate("runpod", huge, 1)
    with pytest.raises(InvalidJobError, match=r"job\.input\.steps"):
        simulate("runpod", ProviderJob(input={"steps": 10**400}), 1)


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1])
def test_seeds_are_64_bit(seed: int) -> None:
    body = {"provider": "modal", "job": {"input": {}, "seed": seed}, "seed": seed}
    with pytest.raises(msgspec.ValidationError, match=re.escape("$.job.seed")):
        msgspec.json.decode(msgspec.json.encode(body), type=SimulateBody)
    body["job"] = {"input": {}}
    with pytest.raises(msgspec.ValidationError, match=re.escape("$.seed")):
        msgspec.json.decode(msgspec.json.encode(body), type=SimulateBody)
