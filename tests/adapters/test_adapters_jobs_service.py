"""A job keeps the mode it was submitted in, across flag flips and restarts (issue 8,
"Provider adapters"; issue 7, dry-run polls): a real nats-server, store, adapters
service and gateway in front of the fake providers."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.adapter_settings import AdaptersSettings
from services.adapters.service import AdaptersService
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.adapters.adapter_fakes import Scripted
from tests.adapters.stack import (
    ENV_NAMES,
    Provider,
    Stack,
    live_settings,
    start_providers,
    start_stack,
    stop_stack,
    write_secrets,
)
from tests.support import poll


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def providers(aiohttp_server: Any) -> AsyncIterator[dict[str, Provider]]:
    found = await start_providers(aiohttp_server)
    yield found
    for provider in found.values():
        provider.fake.release.set()


@pytest.fixture
async def live(
    config: Config, store: Any, bus: Bus, providers: dict[str, Provider], tmp_path: Path
) -> AsyncIterator[Stack]:
    stack = await start_stack(config, live_settings(providers, write_secrets(tmp_path)), bus)
    await stack.set_flag(True)
    yield stack
    await stop_stack(stack)


async def restart_adapters(stack: Stack, config: Config) -> None:
    """Stop the adapters service (gracefully) and start a new instance on the same config."""
    await stack.adapters.stop()
    await stack.adapters.bus.close()
    assert config.nats.url is not None
    stack.adapters = AdaptersService(await Bus.connect(config.nats.url, source="adapters"), config)
    await stack.adapters.start()


async def cancel(stack: Stack, provider: str, remote_id: str) -> Any:
    return await stack.request("POST", f"/api/providers/gpu/cancel/{remote_id}?provider={provider}")


async def test_a_live_job_stays_live_when_the_flag_goes_off(
    live: Stack, providers: dict[str, Provider], config: Config
) -> None:
    """Flag off used to answer a real Replicate job done / "Simulated completion" and
    cancel it without asking Replicate while the prediction ran on."""
    submitted = await live.submit("replicate", {"input": {"prompt": "x"}, "job_id": "j-live"})
    remote_id = submitted.json["id"]
    await live.set_flag(False)
    polled = await live.poll("replicate", remote_id)
    assert polled.status == 200, polled.raw
    assert (polled.json["dry_run"], polled.json["status"]) == (False, "starting")
    assert "Simulated completion" not in polled.json["logs"]
    cancelled = await cancel(live, "replicate", remote_id)
    assert (cancelled.json["dry_run"], cancelled.json["status"]) == (False, "cancelled")
    fake = providers["replicate"].fake
    assert fake.count(f"POST /v1/predictions/{remote_id}/cancel") == 1
    # a restarted service (flag still off) knows the job from the events
    await restart_adapters(live, config)
    assert live.adapters.live_calls_enabled is False
    again = await live.poll("replicate", remote_id)
    assert (again.json["dry_run"], again.json["status"]) == (False, "cancelled")
    # new submits follow the flag
    new = await live.submit("replicate", {"input": {"prompt": "y"}, "seed": 3})
    assert (new.json["dry_run"], new.json["id"]) == (True, "mock-replicate-3")
    assert fake.count("POST /v1/models") == 1


async def test_a_live_job_whose_provider_cannot_go_live_is_refused_not_simulated(
    live: Stack, providers: dict[str, Provider], config: Config, tmp_path: Path
) -> None:
    submitted = await live.submit("runpod", {"input": {}, "job_id": "j-rp"})
    remote_id = submitted.json["id"]
    config.adapters = live_settings(providers, secrets_file=None)  # the token is gone
    await restart_adapters(live, config)
    polled = await live.poll("runpod", remote_id)
    assert polled.status == 409, polled.raw
    assert polled.json["error"] == (
        f"runpod poll: job '{remote_id}' was submitted live, but runpod cannot go live now "
        "(missing_token); runpod was not asked and no answer is simulated"
    )
    assert providers["runpod"].fake.count("GET") == 0


async def test_a_dry_run_poll_of_an_id_never_submitted_is_a_404(
    live: Stack, providers: dict[str, Provider]
) -> None:
    """Issue 7: it answered done / "Simulated completion" for any id."""
    await live.set_flag(False)
    for remote_id in ("mock-modal-99", "fc-77"):
        polled = await live.poll("modal", remote_id)
        assert polled.status == 404, polled.raw
        assert polled.json["kind"] == "UnknownJobError"
        assert f"no job '{remote_id}' was submitted to modal" in polled.json["error"]
        cancelled = await cancel(live, "modal", remote_id)
        assert cancelled.status == 404 and remote_id in cancelled.json["error"]
    submitted = await live.submit("modal", {"input": {}, "seed": 5})
    polled = await live.poll("modal", submitted.json["id"])
    assert (polled.status, polled.json["status"], polled.json["dry_run"]) == (200, "done", True)
    assert providers["modal"].fake.requests == []


async def test_hugging_face_jobs_survive_a_restart(
    live: Stack, providers: dict[str, Provider], config: Config
) -> None:
    """HF jobs lived in process memory only: after a restart a poll answered 404."""
    fake = providers["huggingface"].fake
    done = await live.submit("huggingface", {"input": {"inputs": "hi"}, "job_id": "j-done"})
    done_id = done.json["id"]
    finished = await live.poll_until_terminal("huggingface", done_id)
    expected = finished[-1].json
    assert expected["status"] == "done"
    fake.plan("infer", Scripted(200, [], delay_s=30))
    slow = await live.submit("huggingface", {"input": {"inputs": "slow"}, "job_id": "j-slow"})
    slow_id = slow.json["id"]
    await poll(lambda: fake.count("POST /infer") == 2)
    await restart_adapters(live, config)
    again = (await live.poll("huggingface", done_id)).json
    assert {k: again[k] for k in ("status", "output", "dry_run", "error")} == {
        k: expected[k] for k in ("status", "output", "dry_run", "error")
    }
    interrupted = await live.poll("huggingface", slow_id)
    assert interrupted.status == 200, interrupted.raw
    assert (interrupted.json["status"], interrupted.json["raw_status"]) == (
        "cancelled",
        "interrupted",
    )
    assert "adapters service stopped" in interrupted.json["error"]
    cancelled = await cancel(live, "huggingface", done_id)
    assert (cancelled.status, cancelled.json["status"]) == (200, "done")
    assert fake.count("POST /infer") == 2  # nothing was sent again


async def test_an_hf_request_lost_with_its_process_fails_after_its_deadline(
    config: Config, store: Any, bus: Bus, providers: dict[str, Provider], tmp_path: Path
) -> None:
    """A SIGKILL records nothing: past the longest the request could take, the job
    is failed/interrupted; before it, its last recorded status (it may run elsewhere)."""
    settings = live_settings(providers, write_secrets(tmp_path))
    hf = msgspec.structs.replace(settings.huggingface, inference_timeout_s=0.2,
                                 scale_up_max_attempts=1, timeout_s=0.2)  # fmt: skip
    settings = msgspec.structs.replace(settings, huggingface=hf)
    stack = await start_stack(config, settings, bus)
    second = None
    try:
        await stack.set_flag(True)
        fake = providers["huggingface"].fake
        fake.plan("infer", Scripted(200, [], delay_s=30))
        submitted = await stack.submit("huggingface", {"input": {}})
        remote_id = submitted.json["id"]
        # a second instance (a replica, or a restart after SIGKILL) never held the job
        second = AdaptersService(await Bus.connect(config.nats.url or "", source="adapters"),
                                 config)  # fmt: skip
        await second.start()
        deadline = second._live.get("huggingface").result_deadline_s  # type: ignore[attr-defined]
        await stack.stored.folded(second.follower, "adapter.submitted")
        record = second._book.get("huggingface", remote_id)
        assert record is not None
        assert record.status == "running"
        adapter: Any = second._live.get("huggingface")
        early = await adapter.poll(remote_id)
        assert (early.status, early.logs[0][:28]) == ("running", "the inference request runs i")
        second._book._jobs[("huggingface", remote_id)] = dataclasses.replace(
            record, submitted_at=record.submitted_at - deadline - 1
        )  # as if the deadline had passed
        late = await adapter.poll(remote_id)
        assert (late.status, late.raw_status) == ("failed", "interrupted")
        assert late.error is not None and "was lost with adapters instance" in late.error
    finally:
        if second is not None:
            await second.stop()
            await second.bus.close()
        await stop_stack(stack)


async def test_inline_outputs_are_saved_under_the_data_directory(
    live: Stack, providers: dict[str, Provider], config: Config
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    b64 = base64.b64encode(png).decode()
    providers["runpod"].fake.extra["output"] = {
        "images": [{"filename": "out.png", "type": "base64", "data": b64}]
    }
    submitted = await live.submit("runpod", {"input": {}, "job_id": "j-img"})
    final = (await live.poll_until_terminal("runpod", submitted.json["id"]))[-1].json
    path = _artifact(config, "runpod", "rp-1", "out.png")
    assert final["saved"] == [{
        "path": str(path), "size": len(png), "content_type": "image/png",
        "sha256": hashlib.sha256(png).hexdigest(),
    }]  # fmt: skip
    assert final["artifacts"] == [str(path)]
    assert b64 not in polled_text(final)
    assert await asyncio.to_thread(path.read_bytes) == png
    [event] = [e for e in await live.events(2, "adapter.status_changed")
               if e["data"]["status"] == "done"]  # fmt: skip
    assert event["data"]["saved"] == final["saved"]


def _artifact(config: Config, *parts: str) -> Path:
    return Path(config.data_dir).resolve().joinpath("artifacts", *parts)


def polled_text(body: Any) -> str:
    return msgspec.json.encode(body).decode()


async def test_artifact_limit_is_a_setting(config: Config) -> None:
    assert AdaptersSettings().artifact_max_bytes == 50 * 1024 * 1024
    with pytest.raises(msgspec.ValidationError, match="artifact_max_bytes"):
        msgspec.convert({"artifact_max_bytes": -1}, AdaptersSettings)
