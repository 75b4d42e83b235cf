"""The advisor keeps the rules prepared for its current state, never for an older one."""

from __future__ import annotations

from schemas.advisor import QueueDepthChanged
from schemas.flags import FlagsChanged
from schemas.jobs import JobSpec
from services.advisor.config import DEFAULT_CONFIG, parse_config
from services.advisor.endpoints import AdvisorEndpoints
from services.advisor.projection import AdvisorProjection
from services.advisor.registry import RegistryState
from services.advisor.rules import Decider, decide
from services.advisor.state import AdvisorState, apply, context
from services.runtime.projection import Projector

from .factories import sample

BIG = JobSpec(width=1024, height=1024, batch=2)


def endpoints(state: AdvisorState) -> AdvisorEndpoints:
    e = AdvisorEndpoints()
    e.projector = Projector(AdvisorProjection())
    e.projector.state, e.rules, e._decider = state, DEFAULT_CONFIG, None
    return e


def test_the_kept_decider_follows_every_state_change(seeded: RegistryState) -> None:
    e = endpoints(AdvisorState(telemetry=sample(), registry=seeded))
    first = e._decider_for(e.state)
    assert e._decider_for(e.state) is first
    assert first.decide(BIG).target == "wait"

    e.projector.state = apply(e.state, FlagsChanged(flags={"features.enable_compute": True}))
    on = e._decider_for(e.state)
    assert on is not first and on.decide(BIG).target == "remote"

    e.projector.state = apply(e.state, QueueDepthChanged(depth=8))
    saturated = e._decider_for(e.state)
    assert saturated is not on and "queue saturated" in saturated.decide(BIG).reason

    unchanged = apply(e.state, QueueDepthChanged(depth=3, queue="local"))
    assert unchanged is e.state and e._decider_for(unchanged) is saturated

    e.rules = parse_config("[rules.remote]\nqueue_saturated_at = 9\n")
    assert e._decider_for(e.state).decide(BIG).target == "remote"
    for state in (e.state, AdvisorState(registry=seeded)):
        want = decide(BIG, context(state), e.rules)
        assert e._decider_for(state).decide(BIG) == want


def test_providers_are_priced_only_when_a_decision_needs_them(seeded: RegistryState) -> None:
    off = Decider(context(AdvisorState(telemetry=sample(), registry=seeded)), DEFAULT_CONFIG)
    off.decide(BIG)
    assert off._table is None  # remote not considered: nothing to price
    off.decide(JobSpec(debug=True))  # the details list every provider's minutes
    assert off._table is not None
