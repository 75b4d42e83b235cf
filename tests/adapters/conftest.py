"""Fixtures for the adapter tests: fake provider servers on 127.0.0.1 and live adapters
pointed at them, with a seeded RNG and a sleep that records instead of waiting."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.adapter_settings import RetryPolicy
from services.adapters.huggingface import HuggingFaceAdapter, HuggingFaceSettings
from services.adapters.modal import ModalAdapter, ModalSettings
from services.adapters.options import AdapterOptions
from services.adapters.replicate import ReplicateAdapter, ReplicateSettings
from services.adapters.runpod import RunPodAdapter, RunPodSettings
from services.runtime.secrets import Secret
from tests.adapters.adapter_fakes import (
    MODAL_ID,
    MODAL_SECRET,
    TOKEN,
    Fake,
    hf_app,
    modal_app,
    replicate_app,
    runpod_app,
)

ServerFactory = Callable[[web.Application], Any]


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each delay, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=1.0, max_retry_after_s=5.0)


@pytest.fixture
def http_options(sleeps: SleepRecorder, retry: RetryPolicy) -> AdapterOptions:
    return AdapterOptions(retry=retry, rng=random.Random(1234), sleep=sleeps)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake()
    yield state
    state.release.set()


async def _serve(aiohttp_server: ServerFactory, app: web.Application) -> TestServer:
    server: TestServer = await aiohttp_server(app)
    return server


@pytest.fixture
async def runpod_server(aiohttp_server: ServerFactory, fake: Fake) -> TestServer:
    return await _serve(aiohttp_server, runpod_app(fake))


@pytest.fixture
async def replicate_server(aiohttp_server: ServerFactory, fake: Fake) -> TestServer:
    return await _serve(aiohttp_server, replicate_app(fake))


@pytest.fixture
async def hf_server(aiohttp_server: ServerFactory, fake: Fake) -> TestServer:
    return await _serve(aiohttp_server, hf_app(fake))


@pytest.fixture
async def modal_server(aiohttp_server: ServerFactory, fake: Fake) -> TestServer:
    return await _serve(aiohttp_server, modal_app(fake))


@pytest.fixture
def runpod_settings(runpod_server: TestServer) -> RunPodSettings:
    return RunPodSettings(
        endpoint_id="ep-test", base_url=str(runpod_server.make_url("/v2")), timeout_s=2.0
    )


@pytest.fixture
def replicate_settings(replicate_server: TestServer) -> ReplicateSettings:
    return ReplicateSettings(
        model="acme/sdxl", base_url=str(replicate_server.make_url("")), timeout_s=2.0
    )


@pytest.fixture
def hf_settings(hf_server: TestServer) -> HuggingFaceSettings:
    return HuggingFaceSettings(
        namespace="acme",
        name="llm",
        management_url=str(hf_server.make_url("/v2")),
        timeout_s=2.0,
        inference_timeout_s=2.0,
        scale_up_max_attempts=5,
    )


@pytest.fixture
def modal_settings(modal_server: TestServer) -> ModalSettings:
    return ModalSettings(base_url=str(modal_server.make_url("")), timeout_s=2.0)


@pytest.fixture
async def runpod(
    runpod_settings: RunPodSettings, http_options: AdapterOptions, fake: Fake
) -> AsyncIterator[RunPodAdapter]:
    adapter = RunPodAdapter(runpod_settings, api_key=Secret(TOKEN), options=http_options)
    yield adapter
    fake.release.set()
    await adapter.aclose()


@pytest.fixture
async def replicate(
    replicate_settings: ReplicateSettings, http_options: AdapterOptions, fake: Fake
) -> AsyncIterator[ReplicateAdapter]:
    adapter = ReplicateAdapter(replicate_settings, api_token=Secret(TOKEN), options=http_options)
    yield adapter
    fake.release.set()
    await adapter.aclose()


@pytest.fixture
async def huggingface(
    hf_settings: HuggingFaceSettings, http_options: AdapterOptions, fake: Fake
) -> AsyncIterator[HuggingFaceAdapter]:
    adapter = HuggingFaceAdapter(hf_settings, api_key=Secret(TOKEN), options=http_options)
    yield adapter
    fake.release.set()
    await adapter.aclose()


@pytest.fixture
async def modal(
    modal_settings: ModalSettings, http_options: AdapterOptions, fake: Fake
) -> AsyncIterator[ModalAdapter]:
    adapter = ModalAdapter(
        modal_settings,
        token_id=Secret(MODAL_ID),
        token_secret=Secret(MODAL_SECRET),
        options=http_options,
    )
    yield adapter
    fake.release.set()
    await adapter.aclose()
