"""The advisor folds the telemetry of the node it decides for (the service
deciding with samples of two nodes: tests/telemetry/test_advisor.py)."""

from __future__ import annotations

import msgspec

from schemas.telemetry import TelemetrySample
from services.advisor.state import AdvisorState, apply, gpu_list
from tests.advisor.factories import gpu, sample


def of(node: str | None, *gpus: object, sid: str) -> TelemetrySample:
    return msgspec.structs.replace(sample(*gpus, sample_id=sid), node=node)  # type: ignore[arg-type]


def test_the_fold_keeps_the_latest_sample_of_its_node() -> None:
    state = AdvisorState(node="box-a")
    for s in (of("box-a", gpu(0), sid="a1"), of("box-b", sid="b1"), of("box-b", sid="b2")):
        state = apply(state, s)
    assert state.telemetry is not None and state.telemetry.sample_id == "a1"
    assert gpu_list(state).count == 1 and gpu_list(state).sample_id == "a1"


def test_a_sample_without_a_node_counts_for_every_node() -> None:
    """Logs from before node ids hold the advisor's own samples, without a node."""
    state = apply(AdvisorState(node="box-a"), of(None, sid="old"))
    assert state.telemetry is not None and state.telemetry.sample_id == "old"
    anyone = apply(AdvisorState(), of("box-b", sid="b1"))  # node None: any node
    assert anyone.telemetry is not None and anyone.telemetry.sample_id == "b1"
