"""The dry-run adapter's exact answers, as the issue spells them, and their determinism."""

from __future__ import annotations

import re

import msgspec
import pytest

from services.adapters.contract import ProviderJob
from services.adapters.dryrun import DryRunAdapter, input_seed, is_mock_id, mock_id
from services.adapters.errors import UnknownJobError

PROVIDERS = ["runpod", "huggingface", "replicate", "modal"]


def _plain(result: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(result))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_missing_token_answers(provider: str) -> None:
    adapter = DryRunAdapter(provider, "missing_token")
    submitted = await adapter.submit(ProviderJob(input={"prompt": "x"}))
    assert _plain(submitted) == {
        "ok": False,
        "provider": provider,
        "dry_run": True,
        "reason": "missing token",
    }
    polled = await adapter.poll("anything")
    assert (polled.status, polled.error, polled.dry_run) == ("unknown", "missing token", True)
    cancelled = await adapter.cancel("anything")
    assert (cancelled.ok, cancelled.reason) == (False, "missing token")
    health = await adapter.health()
    assert (health.ok, health.state, health.reason) == (False, "dry_run", "missing token")


async def test_missing_setting_names_it() -> None:
    adapter = DryRunAdapter("runpod", "missing_setting", missing_settings=["runpod.endpoint_id"])
    submitted = await adapter.submit(ProviderJob(input={}))
    assert (submitted.ok, submitted.reason) == (False, "missing setting: runpod.endpoint_id")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dry_run_mode_answers(provider: str) -> None:
    adapter = DryRunAdapter(provider, "dry_run_mode")
    submitted = await adapter.submit(ProviderJob(input={"prompt": "x"}, seed=7, job_id="j1"))
    assert _plain(submitted) == {
        "ok": True,
        "provider": provider,
        "dry_run": True,
        "id": f"mock-{provider}-7",
        "status": "queued",
        "job_id": "j1",
    }
    polled = await adapter.poll(f"mock-{provider}-7")
    assert _plain(polled) == {
        "provider": provider,
        "id": f"mock-{provider}-7",
        "status": "done",
        "dry_run": True,
        "artifacts": [],
        "logs": ["Simulated completion"],
        "raw_status": "simulated",
        "output": None,
        "error": None,
        "progress": None,
        "saved": [],
    }


async def test_flag_off_simulates_and_says_why() -> None:
    adapter = DryRunAdapter("modal", "flag_off")
    submitted = await adapter.submit(ProviderJob(input={}, seed=1))
    assert (submitted.ok, submitted.id) == (True, "mock-modal-1")
    assert submitted.reason is not None and "enable_public_gpu_adapters" in submitted.reason


async def test_same_input_same_answer_whatever_the_key_order() -> None:
    adapter = DryRunAdapter("replicate", "dry_run_mode")
    first = await adapter.submit(ProviderJob(input={"a": 1, "b": [1, 2], "c": {"x": 1, "y": 2}}))
    second = await adapter.submit(ProviderJob(input={"c": {"y": 2, "x": 1}, "b": [1, 2], "a": 1}))
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
    assert first.id is not None and re.fullmatch(r"mock-replicate-\d+", first.id)
    other = await adapter.submit(ProviderJob(input={"a": 2}))
    assert other.id != first.id


def test_the_derived_seed_is_stable_across_processes() -> None:
    # SHA-256 based, not hash(): this number must never change between runs.
    assert input_seed({"prompt": "a red fox"}) == input_seed({"prompt": "a red fox"})
    assert mock_id("runpod", ProviderJob(input={}, seed=0)) == "mock-runpod-0"
    assert input_seed({}) == int.from_bytes(bytes.fromhex("44136fa3"), "big")


@pytest.mark.parametrize("reason", ["dry_run_mode", "flag_off"])
@pytest.mark.parametrize("remote_id", ["rp-123", "mock-modal-7", "mock-runpod-", "mock-runpod-7x"])
async def test_a_simulated_poll_of_an_id_never_issued_is_unknown_not_done(
    reason: str, remote_id: str
) -> None:
    """Issue 7: a dry-run poll (and cancel) of an id never submitted is a 404 naming it."""
    adapter = DryRunAdapter("runpod", reason)  # type: ignore[arg-type]
    with pytest.raises(UnknownJobError, match=f"runpod poll: no job '{remote_id}'"):
        await adapter.poll(remote_id)
    with pytest.raises(UnknownJobError, match=f"runpod cancel: no job '{remote_id}'"):
        await adapter.cancel(remote_id)


def test_mock_ids_are_recognised() -> None:
    assert is_mock_id("runpod", "mock-runpod-7") and is_mock_id("runpod", "mock-runpod--3")
    assert not is_mock_id("runpod", "mock-modal-7") and not is_mock_id("runpod", "rp-1")
