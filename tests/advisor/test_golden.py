"""Golden outputs: every decision, job.advised payload and cost preview of a broad
grid (``golden_grid.py``) is byte-for-byte what the advisor produced before its
decision path was optimised.

The digests below were generated from the code of commit c9a2fd5 (before any
optimisation): sha256 over each output encoded with msgspec.json, one per line.
A mismatch means some decision, reason text, rounding or field order changed:
find which with the spot checks, or by diffing the outputs against that commit.

Regenerated on purpose since: job.advised for the three perf flags recorded in
``inputs.flags`` (0a478a9); decisions and job.advised for rule 5, ``infeasible``
(4471 of the 13650 decisions and 426 of the 1820 payloads were ``wait`` and are
``infeasible`` now; nothing else differs, checked by re-running with the
infeasible check switched off, which gives the earlier digests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import msgspec

from schemas.jobs import JobSpec
from services.advisor.config import config_digest
from services.advisor.errors import CostRequestError, ProviderNotFound
from services.advisor.pricing import preview_costs
from services.advisor.rules import Decider, decide
from services.advisor.service import job_advised
from services.advisor.state import context

from .golden_grid import BENCH_SPECS, configs, cost_requests, specs, states

DECISIONS = "80086c968f997bab9092d3e7688dad3c9c04e587537dd8d31b77ae5fbe1f37e5"
ADVISED = "f4937bd858158aebcdb70dcf8cde3f5f903b5291683be44cf13172deb4511de8"
PREVIEWS = "9efd96cc7d6dac0983dd5eaf0af6a39eca2843f4d64d6d038a8265e40fde22fc"

encode = msgspec.json.encode
SPECS = specs()
STATES = states()
CONFIGS = configs()


def digest(outputs: Iterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for b in outputs:
        h.update(b)
        h.update(b"\n")
        n += 1
    return n, h.hexdigest()


def decisions() -> Iterator[bytes]:
    """One Decider per state and config, kept across specs, as the service does."""
    for _, config in CONFIGS:
        for _, state in STATES:
            decider = Decider(context(state), config)
            for spec in SPECS:
                yield encode(decider.decide(spec))


def advised() -> Iterator[bytes]:
    """job.advised payloads as the service builds them (details dropped, inputs kept;
    the golden digest came from ``AdvisorService._decide`` before ``job_advised``)."""
    for _, config in CONFIGS[:2]:
        for i, (_, state) in enumerate(STATES):
            decider = Decider(context(state), config)
            for spec in SPECS[::3]:
                yield encode(job_advised(spec, state, decider, 100 + i, config_digest(config)))


def previews() -> Iterator[bytes]:
    requests = list(cost_requests(SPECS))
    for _, config in CONFIGS:
        for _, state in STATES:
            for r in requests:
                try:
                    yield encode(preview_costs(r, state.registry, state.flags, config))
                except (ProviderNotFound, CostRequestError) as e:
                    yield f"error: {e}".encode()


def test_the_grid_is_broad() -> None:
    assert (len(SPECS), len(STATES), len(CONFIGS)) == (273, 10, 5)


def test_decisions_are_unchanged() -> None:
    assert digest(decisions()) == (13650, DECISIONS)


def test_decide_is_a_fresh_decider_per_call() -> None:
    for _, config in CONFIGS[::2]:
        for _, state in STATES:
            decider, ctx = Decider(context(state), config), context(state)
            for spec in SPECS[::2]:
                assert encode(decide(spec, ctx, config)) == encode(decider.decide(spec))


def test_job_advised_payloads_are_unchanged() -> None:
    assert digest(advised()) == (1820, ADVISED)


def test_cost_previews_are_unchanged() -> None:
    assert digest(previews()) == (3200, PREVIEWS)


def _decide(spec: dict[str, object], state: str, config: str = "default") -> bytes:
    ctx = context(dict(STATES)[state])
    return encode(decide(JobSpec(**spec), ctx, dict(CONFIGS)[config]))  # type: ignore[arg-type]


def test_spot_check_remote_cheapest() -> None:
    assert _decide(BENCH_SPECS[0], "no-gpu-on") == (
        b'{"target":"remote","rule":"remote_cheapest","reason":"image 1024x1024 (1,048,576 px)'
        b" x batch 1: VRAM demand 8.07 GB (6.5 GB image base + 1.5 GB/MP x 1.049 MP (1024x1024"
        b" x batch 1) = 8.07 GB). Local GPU: no GPU (NVML unavailable: NVML Shared Library Not"
        b" Found). Remote: cheapest fitting provider runpod-serverless: A4000/A4500/RTX 4000"
        b' 16GB at $0.576/h, est. 0.68 min ~$0.0065 (queue depth 0 < 8).","vram_demand_gb":'
        b'8.0729,"remote_considered":true,"provider_id":"runpod-serverless","gpu":"A4000/A4500/'
        b'RTX 4000 16GB","gpu_index":null,"estimated_minutes":0.6754,"estimate_usd":0.0065,'
        b'"details":null}'
    )


def test_spot_check_preferred_provider_with_price_overrides() -> None:
    spec = {"model": "flux-dev", "prefer": "modal", "width": 700, "height": 512}
    assert _decide(spec, "changed-registry-on", "overrides") == (
        b'{"target":"remote","rule":"preferred_target","reason":"image 700x512 (358,400 px) x'
        b" batch 1: VRAM demand 22.54 GB (22 GB flux-dev + 1.5 GB/MP x 0.3584 MP (700x512 x"
        b" batch 1) = 22.54 GB). Preferred target modal honoured: cheapest fitting provider"
        b' modal: L4 at $0.400/h, est. 0.47 min ~$0.0031 (queue depth 0 < 8).",'
        b'"vram_demand_gb":22.5376,"remote_considered":true,"provider_id":"modal","gpu":"L4",'
        b'"gpu_index":null,"estimated_minutes":0.4687,"estimate_usd":0.0031,"details":null}'
    )


def test_spot_check_nothing_fits_is_infeasible() -> None:
    spec = {"kind": "llm", "model": "Llama-3-70B", "max_cost_usd": 0.02}
    assert _decide(spec, "gpu6-on-depth3", "tuned") == (
        b'{"target":"infeasible","rule":"infeasible","reason":"llm job (Llama-3-70B): VRAM'
        b" demand 141.50 GB (70B params x 2 B/param + 1.5 GB overhead = 141.50 GB). Local GPU:"
        b" rule disabled in config. Remote: no provider fits 141.50 GB + 2.25 GB headroom"
        b" (hf-endpoints: largest GPU 141 GB < 141.50 GB + 2.25 GB headroom; lan-box: disabled;"
        b" modal: largest GPU 80 GB < 141.50 GB + 2.25 GB headroom; replicate: largest GPU 80"
        b" GB < 141.50 GB + 2.25 GB headroom; runpod-pod: largest GPU 80 GB < 141.50 GB + 2.25"
        b" GB headroom; runpod-serverless: largest GPU 141 GB < 141.50 GB + 2.25 GB headroom)."
        b" CPU: llm jobs are not allowed on the CPU; RAM 51.5 GB available < 169.8 GB needed."
        b" Infeasible: no target can ever run this job (local GPU: rule disabled in config;"
        b" remote: largest offer of any provider 141 GB < 141.50 GB + 2.25 GB headroom; CPU:"
        b' llm jobs are not allowed on the CPU).","vram_demand_gb":141.5,"remote_considered":'
        b'true,"provider_id":null,"gpu":null,"gpu_index":null,"estimated_minutes":null,'
        b'"estimate_usd":null,"details":null}'
    )


def test_spot_check_flag_off_and_little_ram() -> None:
    assert _decide({"width": 512, "height": 512}, "small-ram-explicit-off") == (
        b'{"target":"wait","rule":"wait_for_local_gpu","reason":"image 512x512 (262,144 px) x'
        b" batch 1: VRAM demand 6.89 GB (6.5 GB image base + 1.5 GB/MP x 0.2621 MP (512x512 x"
        b" batch 1) = 6.89 GB). Local GPU: best free VRAM 3.22 GB (GPU 0) < 8.58 GB needed."
        b" Remote: not considered, features.enable_compute is off. CPU: RAM 1.6 GB available"
        b' < 8.3 GB needed. Waiting for the local GPU.","vram_demand_gb":6.8932,'
        b'"remote_considered":false,"provider_id":null,"gpu":null,"gpu_index":null,'
        b'"estimated_minutes":0.0997,"estimate_usd":0.0001,"details":null}'
    )


def test_spot_check_preferred_local_unnamed_gpu() -> None:
    spec = {"kind": "video", "frames": 8, "prefer": "local"}
    assert _decide(spec, "big-unnamed-no-ram-on", "strict") == (
        b'{"target":"local","rule":"preferred_target","reason":"video 1024x1024 (1,048,576 px)'
        b" x batch 1 x 8 frames: VRAM demand 15.03 GB (10 GB video base + 0.6 GB/MP x 8.389 MP"
        b" (1024x1024 x batch 1 x 8 frames) = 15.03 GB). Preferred target local honoured: GPU 3"
        b' (unnamed) has 83.89 GB free >= 18.79 GB needed (15.03 GB x 1.25 + 0 GB headroom).",'
        b'"vram_demand_gb":15.0332,"remote_considered":true,"provider_id":null,"gpu":null,'
        b'"gpu_index":3,"estimated_minutes":0.6076,"estimate_usd":0.0014,"details":null}'
    )
