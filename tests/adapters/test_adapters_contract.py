"""One contract suite, run against every live adapter (each on its fake provider server)
and against the dry-run adapter: same calls, same result types, same promises about
statuses, log lines and secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import get_args

import msgspec
import pytest

from services.adapters.contract import (
    AdapterBase,
    CancelResult,
    HealthResult,
    PollResult,
    ProviderJob,
    Status,
    SubmitResult,
)
from services.adapters.dryrun import DryRunAdapter
from services.adapters.huggingface import HuggingFaceAdapter
from services.adapters.modal import ModalAdapter
from services.adapters.replicate import ReplicateAdapter
from services.adapters.runpod import RunPodAdapter
from services.runtime.logs import JsonFormatter
from tests.adapters.adapter_fakes import MODAL_ID, MODAL_SECRET, TOKEN

STATUSES = set(get_args(Status))
SECRETS = (TOKEN, MODAL_ID, MODAL_SECRET)
JOB = ProviderJob(input={"prompt": "a red fox", "steps": 20}, job_id="job-42")


@dataclass
class Driver:
    adapter: AdapterBase
    dry_run: bool
    finish: Callable[[str], Awaitable[PollResult]]


async def _poll_until_terminal(adapter: AdapterBase, remote_id: str) -> PollResult:
    for _ in range(10):  # each poll advances the fake provider one state
        result = await adapter.poll(remote_id)
        if result.terminal:
            return result
    raise AssertionError(f"{adapter.provider} job {remote_id} never finished")


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


class AdapterContract:
    """The promises every adapter keeps; subclasses supply the ``driver`` fixture."""

    async def test_submit_returns_an_id_and_a_status_of_ours(self, driver: Driver) -> None:
        result = await driver.adapter.submit(JOB)
        assert isinstance(result, SubmitResult)
        assert result.ok and result.id
        assert result.dry_run is driver.dry_run
        assert result.status in STATUSES
        assert result.job_id == "job-42"

    async def test_a_submitted_job_finishes_done(self, driver: Driver) -> None:
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        final = await driver.finish(submitted.id)
        assert isinstance(final, PollResult)
        assert final.status == "done"
        assert final.dry_run is driver.dry_run
        assert final.error is None

    async def test_poll_statuses_are_ours(self, driver: Driver) -> None:
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        result = await driver.adapter.poll(submitted.id)
        assert result.status in STATUSES
        assert result.id == submitted.id

    async def test_cancel_is_accepted(self, driver: Driver) -> None:
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        result = await driver.adapter.cancel(submitted.id)
        assert isinstance(result, CancelResult)
        assert result.ok and result.dry_run is driver.dry_run
        assert result.status in STATUSES | {None}

    async def test_health_answers(self, driver: Driver) -> None:
        result = await driver.adapter.health()
        assert isinstance(result, HealthResult)
        assert result.ok and result.dry_run is driver.dry_run

    async def test_results_round_trip_through_json(self, driver: Driver) -> None:
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        polled = await driver.finish(submitted.id)
        for result in (submitted, polled, await driver.adapter.health()):
            encoded = msgspec.json.encode(result)
            assert msgspec.json.decode(encoded, type=type(result)) == result

    async def test_every_submit_and_poll_logs_one_json_line(
        self, driver: Driver, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="gpuroute.adapters")
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        await driver.adapter.poll(submitted.id)
        formatter = JsonFormatter()  # what gpuroute.log and stderr get
        lines = [
            json.loads(formatter.format(record))
            for record in caplog.records
            if record.name == "gpuroute.adapters"
        ]
        assert [line["msg"] for line in lines[:2]] == ["adapter.submit", "adapter.poll"]
        events = [line["event"] for line in lines]
        assert events[:2] == ["adapter.submit", "adapter.poll"]
        for line in lines[:2]:
            assert line["provider"] == driver.adapter.provider
            assert line["dry_run"] is driver.dry_run
            assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
            assert line["remote_id"] == submitted.id
        assert lines[0]["job_id"] == "job-42"

    async def test_no_secret_in_results_reprs_or_logs(
        self, driver: Driver, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        submitted = await driver.adapter.submit(JOB)
        assert submitted.id is not None
        results = [
            submitted,
            await driver.finish(submitted.id),
            await driver.adapter.cancel(submitted.id),
            await driver.adapter.health(),
        ]
        for result in results:
            _assert_no_secret(msgspec.json.encode(result).decode())
            _assert_no_secret(repr(result))
        _assert_no_secret(repr(driver.adapter))
        _assert_no_secret(str(vars(driver.adapter)))
        _assert_no_secret(caplog.text)


class TestRunPodLive(AdapterContract):
    @pytest.fixture
    def driver(self, runpod: RunPodAdapter) -> Driver:
        return Driver(runpod, False, lambda rid: _poll_until_terminal(runpod, rid))


class TestReplicateLive(AdapterContract):
    @pytest.fixture
    def driver(self, replicate: ReplicateAdapter) -> Driver:
        return Driver(replicate, False, lambda rid: _poll_until_terminal(replicate, rid))


class TestHuggingFaceLive(AdapterContract):
    @pytest.fixture
    def driver(self, huggingface: HuggingFaceAdapter) -> Driver:
        return Driver(huggingface, False, huggingface.wait)


class TestModalLive(AdapterContract):
    @pytest.fixture
    def driver(self, modal: ModalAdapter) -> Driver:
        return Driver(modal, False, lambda rid: _poll_until_terminal(modal, rid))


@pytest.fixture(params=["runpod", "huggingface", "replicate", "modal"])
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class TestDryRunMode(AdapterContract):
    @pytest.fixture
    def driver(self, provider: str) -> Driver:
        adapter = DryRunAdapter(provider, "dry_run_mode")
        return Driver(adapter, True, adapter.poll)


class TestDryRunFlagOff(AdapterContract):
    @pytest.fixture
    def driver(self, provider: str) -> Driver:
        adapter = DryRunAdapter(provider, "flag_off")
        return Driver(adapter, True, adapter.poll)
