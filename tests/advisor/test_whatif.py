from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from schemas.jobs import JobSpec
from services.advisor.config import AdvisorConfig, load_config, parse_config
from services.advisor.decision import AdviceRecord
from services.advisor.rules import advise
from services.advisor.whatif import render, what_if

from .factories import ON, MakeContext, gpu

OPS_FILE = Path(__file__).resolve().parents[2] / "ops" / "advisor.toml"


@pytest.fixture
def log(make_context: MakeContext, advisor_config: AdvisorConfig) -> list[AdviceRecord]:
    """A small mixed log, encoded and decoded as the store would hand it back."""
    jobs = [
        (JobSpec(width=1024, height=1024), make_context(gpu())),
        (JobSpec(width=512, height=512), make_context()),
        (JobSpec(width=1024, height=1024), make_context()),
        (JobSpec(width=1024, height=1024, batch=2), make_context(flags=ON)),
        (JobSpec(kind="llm", model="llama-3-8b"), make_context(flags=ON)),
        (
            JobSpec(kind="video", width=512, height=512, frames=24),
            make_context(flags=ON, depth=9),
        ),
        (
            JobSpec(kind="speech", model="whisper-large-v3"),
            make_context(gpu(free_mib=2048), flags=ON),
        ),
        (JobSpec(width=768, height=768, prefer="modal"), make_context(flags=ON)),
    ]
    records = [advise(f"job-{i}", spec, ctx, advisor_config) for i, (spec, ctx) in enumerate(jobs)]
    raw = [msgspec.json.encode(r) for r in records]
    return [msgspec.json.decode(r, type=AdviceRecord) for r in raw]


def test_identical_config_changes_nothing(log: list[AdviceRecord]) -> None:
    report = what_if(log, load_config(OPS_FILE))
    assert (report.total, report.changed, report.changes) == (len(log), 0, [])
    assert report.cost_difference_usd == 0
    assert report.cost_before_usd == report.cost_after_usd > 0
    assert render(report).splitlines()[0].endswith(f"0 of {len(log)} decisions change")


def test_price_rise_moves_decisions_away(log: list[AdviceRecord]) -> None:
    on_serverless = [r.job_id for r in log if r.decision.provider_id == "runpod-serverless"]
    assert on_serverless, "the log should have jobs on the cheapest provider"
    advisor_config = parse_config(
        '[[price_overrides]]\nprovider = "runpod-serverless"\nmultiplier = 10.0\n'
    )
    report = what_if(log, advisor_config)
    assert sorted(c.job_id for c in report.changes) == sorted(on_serverless)
    for c in report.changes:
        assert (c.old_target, c.new_target) == ("remote", "remote")
        assert c.new_provider not in (None, "runpod-serverless")
        assert c.new_estimate_usd is not None and c.old_estimate_usd is not None
        assert c.new_estimate_usd > c.old_estimate_usd
    assert report.cost_difference_usd > 0
    assert f"{report.changed} of {len(log)} decisions change" in render(report)


def test_price_cut_attracts_decisions(log: list[AdviceRecord]) -> None:
    advisor_config = parse_config(
        '[[price_overrides]]\nprovider = "hf-endpoints"\nmultiplier = 0.001\n'
    )
    report = what_if(log, advisor_config)
    remote_rule = [r for r in log if r.decision.rule == "remote_cheapest"]
    assert report.changed == len(remote_rule) > 0
    assert all(c.new_provider == "hf-endpoints" for c in report.changes)
    assert report.cost_difference_usd < 0


def test_threshold_change(log: list[AdviceRecord]) -> None:
    advisor_config = parse_config("[rules.cpu]\nmax_megapixels = 2.0\n")
    report = what_if(log, advisor_config)
    assert [(c.job_id, c.old_target, c.new_target) for c in report.changes] == [
        ("job-2", "wait", "cpu")
    ]
    line = render(report).splitlines()[-1]
    assert line.startswith("  job-2: wait (wait_for_local_gpu) -> cpu (cpu_small_job);")


def test_what_if_reads_the_recorded_flags(log: list[AdviceRecord]) -> None:
    # The what-if config cannot turn remote on: flags are inputs, recorded per decision.
    advisor_config = parse_config("[rules.remote]\nqueue_saturated_at = 100\n")
    report = what_if(log, advisor_config)
    assert [c.job_id for c in report.changes] == ["job-5"]
    assert report.changes[0].new_target == "remote"
