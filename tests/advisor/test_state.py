from __future__ import annotations

import msgspec
import pytest

from schemas.advisor import QueueDepthChanged
from schemas.flags import DEFAULTS, FlagsChanged
from schemas.jobs import JobSpec
from schemas.providers import ProviderRemoved
from services.advisor.config import AdvisorConfig
from services.advisor.registry import load_seed, seed_payloads
from services.advisor.rules import decide
from services.advisor.state import (
    AdvisorEvent,
    AdvisorState,
    all_flags,
    apply,
    context,
    gpu_list,
)

from .factories import gpu, sample


def build(events: list[AdvisorEvent]) -> AdvisorState:
    state = AdvisorState()
    for e in events:
        state = apply(state, e)
    return state


def test_fold_builds_the_decision_context(advisor_config: AdvisorConfig) -> None:
    events: list[AdvisorEvent] = [
        *seed_payloads(AdvisorState().registry, load_seed()),
        sample(sample_id="old"),
        sample(gpu(), sample_id="new"),
        FlagsChanged(flags={"features.enable_compute": True}),
        QueueDepthChanged(depth=4),
        QueueDepthChanged(depth=50, queue="gpu-box"),
        ProviderRemoved(id="modal"),
    ]
    state = build(events)
    ctx = context(state)
    assert ctx.telemetry.sample_id == "new"
    assert ctx.flags == {"features.enable_compute": True}
    assert ctx.remote_queue_depth == 4
    assert "modal" not in ctx.registry.providers and ctx.registry.version == 7
    assert msgspec.json.encode(build(events)) == msgspec.json.encode(state)
    assert decide(JobSpec(), ctx, advisor_config).target == "local"


def test_flags_merge_and_unknown_flags_are_ignored() -> None:
    compute, adapters = "features.enable_compute", "features.enable_public_gpu_adapters"
    state = build(
        [
            FlagsChanged(flags={compute: True, "features.typo": True}),
            FlagsChanged(flags={adapters: True}),
            FlagsChanged(flags={compute: False}),
        ]
    )
    assert state.flags == {compute: False, adapters: True}
    assert all_flags(AdvisorState()) == dict(sorted(DEFAULTS.items()))  # every known flag


def test_context_before_any_telemetry(advisor_config: AdvisorConfig) -> None:
    ctx = context(AdvisorState())
    assert ctx.telemetry.gpus == () and ctx.telemetry.reason == "no telemetry sample received yet"
    assert decide(JobSpec(width=512, height=512), ctx, advisor_config).target == "cpu"


def test_gpu_list() -> None:
    state = build([sample(gpu(0), gpu(1))])
    listing = gpu_list(state)
    assert listing.count == 2 and listing.raw is None
    assert listing.flags == DEFAULTS and not listing.remote_enabled
    debug = gpu_list(state, debug=True)
    assert debug.raw is not None and debug.raw.host.cpu_count == 16
    empty = gpu_list(build([sample()]))
    assert empty.count == 0 and empty.reason == "NVML unavailable: NVML Shared Library Not Found"


def test_unknown_payload_is_refused() -> None:
    with pytest.raises(TypeError):
        apply(AdvisorState(), object())  # type: ignore[arg-type]
