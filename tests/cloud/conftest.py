"""Fixtures for the cloud tests: the RunPod REST v2 stand-in on 127.0.0.1 and a live pod
client pointed at it, retrying through a sleep that records instead of waiting."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from schemas.cloud import PodsSettings
from services.cloud.runpod_v2 import RunPodV2Client
from services.runtime.clock import ManualClock
from services.runtime.http import HttpOptions
from services.runtime.secrets import Secret
from tests.adapters.conftest import SleepRecorder
from tests.cloud.runpod_v2_standin import RunPodV2Standin

API_KEY = "rpa_TESTKEY0123456789abcdef"


@pytest.fixture
def pod_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def runpod_v2(pod_clock: ManualClock) -> AsyncIterator[RunPodV2Standin]:
    """The stand-in on 127.0.0.1:<free port>; ``runpod_v2.base_url`` ends in ``/v2``."""
    async with RunPodV2Standin(api_key=API_KEY, clock=pod_clock) as standin:
        yield standin


@pytest.fixture
def pod_sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def pods_settings(runpod_v2: RunPodV2Standin) -> PodsSettings:
    return PodsSettings(
        base_url=runpod_v2.base_url, max_attempts=3, max_retry_after_s=30.0,
        proxy_url="http://127.0.0.1:9/{pod_id}/{port}",
    )  # fmt: skip


@pytest.fixture
async def live_pods(
    pods_settings: PodsSettings, pod_sleeps: SleepRecorder
) -> AsyncIterator[RunPodV2Client]:
    options = HttpOptions(rng=random.Random(7), sleep=pod_sleeps)
    client = RunPodV2Client(pods_settings, api_key=Secret(API_KEY), options=options)
    yield client
    await client.aclose()
