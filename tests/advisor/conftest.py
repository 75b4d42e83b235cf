"""Fixtures for the advisor core: recorded telemetry, a seeded registry, contexts."""

from __future__ import annotations

import pytest

from schemas.telemetry import GpuDevice
from services.advisor.config import DEFAULT_CONFIG, AdvisorConfig
from services.advisor.decision import DecisionContext
from services.advisor.registry import RegistryState, fold, load_seed, seed_payloads

from .factories import MakeContext, sample


@pytest.fixture
def advisor_config() -> AdvisorConfig:
    return DEFAULT_CONFIG


@pytest.fixture(scope="session")
def seeded() -> RegistryState:
    return fold(seed_payloads(RegistryState(), load_seed()))


@pytest.fixture
def make_context(seeded: RegistryState) -> MakeContext:
    def make(
        *gpus: GpuDevice,
        flags: dict[str, bool] | None = None,
        depth: int = 0,
        registry: RegistryState | None = None,
    ) -> DecisionContext:
        return DecisionContext(
            telemetry=sample(*gpus),
            flags=flags or {},
            registry=seeded if registry is None else registry,
            remote_queue_depth=depth,
        )

    return make
