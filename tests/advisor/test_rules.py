from __future__ import annotations

import msgspec
import pytest

from schemas.jobs import JobSpec, JobSpecBody
from schemas.telemetry import empty_sample
from services.advisor.config import AdvisorConfig, config_digest, parse_config
from services.advisor.decision import AdviceRecord, DecisionContext
from services.advisor.jobspec import parse_job_spec
from services.advisor.pricing import Work, compare_providers
from services.advisor.registry import RegistryState
from services.advisor.rules import advise, decide
from services.advisor.vram import derive

from .factories import GIB, ON, MakeContext, gpu

SMALL = JobSpec(width=512, height=512)  # 0.26 MP: small enough for the CPU
BIG = JobSpec(width=1024, height=1024)  # 1.05 MP: too big for the CPU by default


def test_local_gpu_with_room_takes_the_job(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    d = decide(BIG, make_context(gpu(free_mib=20 * 1024)), advisor_config)
    assert (d.target, d.rule, d.gpu_index, d.provider_id) == ("local", "local_gpu", 0, None)
    assert "1024x1024 (1,048,576 px)" in d.reason
    assert "VRAM demand 8.07 GB" in d.reason
    assert "21.47 GB free >= 9.88 GB needed" in d.reason
    assert "Remote: not considered, features.enable_compute is off." in d.reason
    assert d.estimated_minutes == derive(BIG, advisor_config).minutes_local_gpu
    assert d.remote_considered is False


def test_headroom_counts(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    need = 8.0729 * 1.1 + 1.0  # GB
    just_short = int((need - 0.05) * 1e9 / 2**20)
    d = decide(BIG, make_context(gpu(free_mib=just_short)), advisor_config)
    assert d.rule != "local_gpu"
    assert "< 9.88 GB needed" in d.reason


def test_picks_the_gpu_with_most_free_vram(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    ctx = make_context(
        gpu(0, free_mib=12 * 1024), gpu(1, free_mib=22 * 1024), gpu(2, free_mib=None)
    )
    assert decide(BIG, ctx, advisor_config).gpu_index == 1


def test_unknown_free_vram_is_not_room(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    d = decide(SMALL, make_context(gpu(free_mib=None)), advisor_config)
    assert d.target == "cpu"
    assert "free VRAM unknown on all 1 GPU(s)" in d.reason


def test_flag_off_small_job_goes_to_cpu(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    d = decide(SMALL, make_context(), advisor_config)
    assert (d.target, d.rule) == ("cpu", "cpu_small_job")
    assert "Local GPU: no GPU (NVML unavailable: NVML Shared Library Not Found)." in d.reason
    assert d.reason.count("features.enable_compute is off") == 1
    assert "small enough: 0.26 MP <= 0.6 MP" in d.reason


def test_flag_off_big_job_waits(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    d = decide(BIG, make_context(), advisor_config)
    assert (d.target, d.rule) == ("wait", "wait_for_local_gpu")
    assert "Remote: not considered, features.enable_compute is off." in d.reason
    assert "CPU: too big: 1.05 MP > 0.6 MP." in d.reason
    assert d.reason.endswith("Waiting for the local GPU.")


def test_flag_on_picks_cheapest_fitting_provider(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    ctx = make_context(flags=ON)
    d = decide(BIG, ctx, advisor_config)
    found, _ = compare_providers(
        Work.of_job(derive(BIG, advisor_config)), ctx.registry, advisor_config, True
    )
    assert (d.target, d.rule) == ("remote", "remote_cheapest")
    assert (d.provider_id, d.gpu) == (found[0].provider_id, found[0].gpu)
    assert d.estimate_usd == found[0].estimate
    assert "queue depth 0 < 8" in d.reason and f"{found[0].provider_id}:" in d.reason
    assert d.remote_considered is True


def test_local_still_wins_when_remote_is_on(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    d = decide(BIG, make_context(gpu(), flags=ON), advisor_config)
    assert d.target == "local"
    assert "features.enable_compute" not in d.reason


@pytest.mark.parametrize(("depth", "remote"), [(7, True), (8, False), (50, False)])
def test_saturated_queue(
    make_context: MakeContext, advisor_config: AdvisorConfig, depth: int, remote: bool
) -> None:
    d = decide(BIG, make_context(flags=ON, depth=depth), advisor_config)
    assert (d.target == "remote") is remote
    if not remote:
        assert f"queue saturated: depth {depth} >= 8" in d.reason
        assert d.target == "wait"


def test_max_cost(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    """A max cost below every fitting price, with no GPU and a job too big for the
    CPU, can never run: infeasible with the numbers and no price (it used to wait)."""
    cheap = JobSpec(width=1024, height=1024, max_cost_usd=0.0001)
    d = decide(cheap, make_context(flags=ON), advisor_config)
    assert (d.target, d.rule) == ("infeasible", "infeasible")
    assert "> max cost $0.0001" in d.reason
    # disabled providers count too: an operator may enable one
    assert "remote: cheapest fitting offer (lan-box, RTX 4090) costs ~$0.0002" in d.reason
    assert d.estimate_usd is None and d.estimated_minutes is None and d.provider_id is None
    roomy = decide(
        JobSpec(width=1024, height=1024, max_cost_usd=1), make_context(flags=ON), advisor_config
    )
    assert roomy.target == "remote" and "max cost $1" in roomy.reason


def test_no_provider_fits(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    d = decide(JobSpec(kind="llm", model="llama-3.1-405b"), make_context(flags=ON), advisor_config)
    assert (d.target, d.rule) == ("infeasible", "infeasible")
    assert "no provider fits 811.50 GB + 0.5 GB headroom" in d.reason
    assert "hf-endpoints: largest GPU 141 GB" in d.reason
    assert (
        "Infeasible: no target can ever run this job (local GPU: no GPU (NVML unavailable:"
        " NVML Shared Library Not Found); remote: largest offer of any provider 141 GB"
        " < 811.50 GB + 0.5 GB headroom;"
        " CPU: too slow:" in d.reason
    )
    assert d.estimate_usd is None


def test_wait_only_for_a_job_that_fits_once_something_frees(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    big = JobSpec(width=1024, height=1024, vram_gb=30)  # 30 x 1.1 + 1 = 34 GB local
    busy = gpu(free_mib=2 * GIB, total_mib=40 * GIB)  # 40 GB in all, 2 GB free now
    d = decide(big, make_context(busy), advisor_config)
    assert (d.target, d.rule) == ("wait", "wait_for_local_gpu") and d.estimate_usd is not None
    small = gpu(free_mib=2 * GIB, total_mib=24 * GIB)  # never 34 GB; providers fit
    assert decide(big, make_context(small), advisor_config).target == "wait"  # the flag may turn on
    no_fit = decide(big, make_context(small, registry=RegistryState()), advisor_config)
    assert no_fit.target == "infeasible"
    assert "largest GPU has 25.77 GB in all < 34.00 GB needed" in no_fit.reason
    assert "remote: no provider registered" in no_fit.reason
    unknown = msgspec.structs.replace(small, memory_total_mib=None)
    assert (
        decide(big, make_context(unknown, registry=RegistryState()), advisor_config).target
        == "wait"
    )
    before_telemetry = msgspec.structs.replace(
        make_context(registry=RegistryState()), telemetry=empty_sample("none", 0.0, "no sample")
    )
    assert decide(big, before_telemetry, advisor_config).target == "wait"


def test_preferred_target_honoured_when_feasible(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    spec = JobSpec(width=512, height=512, prefer="cpu")
    d = decide(spec, make_context(gpu()), advisor_config)
    assert (d.target, d.rule) == ("cpu", "preferred_target")
    assert d.reason.count("Preferred target cpu honoured") == 1
    modal = decide(
        JobSpec(width=512, height=512, prefer="modal"), make_context(flags=ON), advisor_config
    )
    assert (modal.target, modal.provider_id, modal.rule) == ("remote", "modal", "preferred_target")
    remote = decide(JobSpec(prefer="remote"), make_context(gpu(), flags=ON), advisor_config)
    assert (remote.target, remote.rule) == ("remote", "preferred_target")


@pytest.mark.parametrize(
    ("prefer", "flags", "why"),
    [
        (
            "modal",
            {},
            "Preferred target modal not feasible: not considered, features.enable_compute",
        ),
        (
            "nowhere",
            ON,
            "Preferred target nowhere not feasible: nowhere: not a registered provider",
        ),
        ("lan-box", ON, "Preferred target lan-box not feasible: lan-box: disabled"),
        ("cpu", {}, "Preferred target cpu not feasible: too big"),
        ("wait", {}, "waiting is not a target one can prefer"),
    ],
)
def test_preferred_target_not_feasible_falls_back(
    make_context: MakeContext,
    advisor_config: AdvisorConfig,
    prefer: str,
    flags: dict[str, bool],
    why: str,
) -> None:
    d = decide(
        JobSpec(width=1024, height=1024, prefer=prefer),
        make_context(gpu(), flags=flags),
        advisor_config,
    )
    assert why in d.reason
    assert (d.target, d.rule) == ("local", "local_gpu")


def test_rules_can_be_switched_off(make_context: MakeContext) -> None:
    advisor_config = parse_config(
        "[rules.local_gpu]\nenabled = false\n[rules.cpu]\nenabled = false\n"
    )
    d = decide(SMALL, make_context(gpu()), advisor_config)
    assert d.target == "wait"
    assert "Local GPU: rule disabled in config." in d.reason
    assert "CPU: rule disabled in config." in d.reason


def test_thresholds_come_from_config(make_context: MakeContext) -> None:
    advisor_config = parse_config(
        "[rules.cpu]\nmax_megapixels = 2.0\n[rules.remote]\nqueue_saturated_at = 2\n"
    )
    assert decide(BIG, make_context(), advisor_config).target == "cpu"
    d = decide(BIG, make_context(flags=ON, depth=2), advisor_config)
    assert "queue saturated: depth 2 >= 2" in d.reason


def test_debug_details(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    spec = parse_job_spec(b'{"width":1024,"height":1024,"debug":true}')
    ctx = make_context(depth=3)
    d = decide(spec, ctx, advisor_config)
    assert d.details is not None
    assert d.details.thresholds == advisor_config.rules
    assert d.details.derived.pixels == 1_048_576
    assert d.details.derived.minutes_remote["modal"] > 0
    snap = d.details.context
    assert snap.telemetry_sample_id == "tel-1"
    assert snap.flags == {"features.enable_compute": False}
    assert (snap.registry_version, snap.remote_queue_depth) == (6, 3)
    assert [c.rule for c in d.details.candidates] == [
        "local_gpu",
        "remote_cheapest",
        "cpu_small_job",
    ]
    assert d.details.config_digest == config_digest(advisor_config)
    assert decide(BIG, ctx, advisor_config).details is None


def test_decide_is_pure_and_replayable(
    make_context: MakeContext, advisor_config: AdvisorConfig
) -> None:
    ctx = make_context(gpu(free_mib=4096), flags=ON, depth=1)
    spec = JobSpecBody(width=768, height=768, batch=2, debug=True)
    first = msgspec.json.encode(decide(spec, ctx, advisor_config))
    wire_ctx = msgspec.json.decode(msgspec.json.encode(ctx), type=DecisionContext)
    wire_spec = msgspec.json.decode(msgspec.json.encode(spec), type=JobSpec)
    assert msgspec.json.encode(decide(wire_spec, wire_ctx, advisor_config)) == first
    assert msgspec.json.encode(decide(spec, ctx, advisor_config)) == first


def test_advise_records_inputs(make_context: MakeContext, advisor_config: AdvisorConfig) -> None:
    rec = advise("job-1", JobSpecBody(width=512, height=512), make_context(), advisor_config)
    assert type(rec.spec) is JobSpec
    assert rec.decision == decide(rec.spec, rec.context, advisor_config)
    assert rec.config_digest == config_digest(advisor_config)
    raw = msgspec.json.encode(rec)
    assert msgspec.json.decode(raw, type=AdviceRecord) == rec
