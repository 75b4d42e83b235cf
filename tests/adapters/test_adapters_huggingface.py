"""Hugging Face Inference Endpoints adapter against the fake management API and
endpoint proxy: endpoint states, scale-from-zero 503s, X-Scale-Up-Timeout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from schemas.adapters import PollResult
from services.adapters.artifacts import ArtifactStore
from services.adapters.contract import ProviderJob
from services.adapters.errors import InvalidJobError, UnknownJobError
from services.adapters.huggingface import HEALTH_MAP, HuggingFaceAdapter, HuggingFaceSettings
from services.adapters.options import AdapterOptions
from services.runtime.provider_errors import AuthError, MalformedResponseError
from services.runtime.secrets import Secret
from tests.adapters.adapter_fakes import TOKEN, Fake, Scripted
from tests.adapters.conftest import SleepRecorder

JOB = ProviderJob(input={"inputs": "Hello"}, job_id="j3")


async def test_submit_on_a_running_endpoint_runs_the_inference(
    huggingface: HuggingFaceAdapter, fake: Fake
) -> None:
    submitted = await huggingface.submit(JOB)
    assert (submitted.ok, submitted.status, submitted.raw_status) == (True, "running", "running")
    assert submitted.id is not None and submitted.id.startswith("hf-")
    final = await huggingface.wait(submitted.id)
    assert (final.status, final.raw_status) == ("done", "HTTP 200")
    assert final.output == [{"generated_text": "hello from the endpoint"}]
    management, inference = fake.requests
    assert (management.method, management.path) == ("GET", "/v2/endpoint/acme/llm")
    assert (inference.method, inference.path, inference.body) == ("POST", "/infer", JOB.input)
    assert inference.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Scale-Up-Timeout" not in inference.headers


async def test_scaled_to_zero_meets_503s_then_succeeds(
    huggingface: HuggingFaceAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.extra["state"] = "scaledToZero"
    submitted = await huggingface.submit(JOB)
    assert (submitted.status, submitted.raw_status) == ("starting", "scaledToZero")
    assert submitted.id is not None
    final = await huggingface.wait(submitted.id)
    assert final.status == "done"
    assert fake.count("POST /infer") == 3
    assert sleeps.delays == [1.0, 1.0]  # the proxy's Retry-After


async def test_scale_up_timeout_header_lets_the_proxy_hold_the_request(
    hf_settings: HuggingFaceSettings,
    http_options: AdapterOptions,
    fake: Fake,
    sleeps: SleepRecorder,
) -> None:
    fake.extra["state"] = "scaledToZero"
    settings = HuggingFaceSettings(
        namespace="acme",
        name="llm",
        management_url=hf_settings.management_url,
        scale_up_timeout_s=600,
    )
    adapter = HuggingFaceAdapter(settings, api_key=Secret(TOKEN), options=http_options)
    try:
        submitted = await adapter.submit(JOB)
        assert submitted.id is not None
        assert (await adapter.wait(submitted.id)).status == "done"
    finally:
        await adapter.aclose()
    assert fake.count("POST /infer") == 1 and sleeps.delays == []
    assert fake.requests[-1].headers["X-Scale-Up-Timeout"] == "600"


async def test_a_cold_start_longer_than_the_budget_fails_the_job(
    huggingface: HuggingFaceAdapter, fake: Fake
) -> None:
    fake.extra.update(state="scaledToZero", cold_503s=99)
    submitted = await huggingface.submit(JOB)
    assert submitted.id is not None
    final = await huggingface.wait(submitted.id)
    assert (final.status, final.raw_status) == ("failed", "HTTP 503")
    assert final.error == "HTTP 503: Service Unavailable"
    assert fake.count("POST /infer") == 5  # scale_up_max_attempts


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("paused", "endpoint is paused; resume it first"),
        ("failed", "endpoint is failed"),
        ("pending", "endpoint has no URL yet (state pending)"),
    ],
)
async def test_an_endpoint_that_cannot_serve_refuses_the_submit(
    huggingface: HuggingFaceAdapter, fake: Fake, state: str, reason: str
) -> None:
    fake.extra["state"] = state
    submitted = await huggingface.submit(JOB)
    assert (submitted.ok, submitted.reason, submitted.raw_status) == (False, reason, state)
    assert fake.count("POST /infer") == 0


async def test_an_unknown_endpoint_state_is_surfaced(
    huggingface: HuggingFaceAdapter, fake: Fake
) -> None:
    fake.extra["state"] = "migrating"
    submitted = await huggingface.submit(JOB)
    assert (submitted.status, submitted.raw_status) == ("unknown", "migrating")
    health = await huggingface.health()
    assert (health.ok, health.state, health.raw_state) == (False, "unknown", "migrating")


@pytest.mark.parametrize(("raw", "state"), sorted(HEALTH_MAP.items()))
async def test_health_maps_every_documented_state(
    huggingface: HuggingFaceAdapter, fake: Fake, raw: str, state: str
) -> None:
    fake.extra["state"] = raw
    health = await huggingface.health()
    assert (health.state, health.raw_state) == (state, raw)
    assert health.ok is (state in ("ready", "scaled_to_zero", "starting"))


async def test_pause_resume_scale_to_zero(huggingface: HuggingFaceAdapter, fake: Fake) -> None:
    assert (await huggingface.pause()).state == "paused"
    assert (await huggingface.resume()).state == "starting"
    assert (await huggingface.scale_to_zero()).state == "scaled_to_zero"
    paths = [seen.path for seen in fake.requests]
    assert paths == [
        "/v2/endpoint/acme/llm/pause",
        "/v2/endpoint/acme/llm/resume",
        "/v2/endpoint/acme/llm/scale-to-zero",
    ]


async def test_non_json_output_is_described_not_stored(
    huggingface: HuggingFaceAdapter, fake: Fake
) -> None:
    fake.extra["image"] = True
    submitted = await huggingface.submit(JOB)
    assert submitted.id is not None
    final = await huggingface.wait(submitted.id)
    assert final.output == {"content_type": "image/png", "bytes": 8}
    assert final.logs == ["received 8 bytes of image/png"]


async def test_malformed_inference_json_fails_the_job_readably(
    huggingface: HuggingFaceAdapter, fake: Fake
) -> None:
    fake.plan("infer", Scripted(200, "[{oops", raw=True))
    submitted = await huggingface.submit(JOB)
    assert submitted.id is not None
    final = await huggingface.wait(submitted.id)
    assert final.status == "failed"
    assert final.error is not None and final.error.startswith("unexpected response body")


async def test_cancel_stops_a_slow_inference(huggingface: HuggingFaceAdapter, fake: Fake) -> None:
    fake.plan("infer", Scripted(200, [], delay_s=10))
    submitted = await huggingface.submit(JOB)
    assert submitted.id is not None
    cancelled = await huggingface.cancel(submitted.id)
    assert (cancelled.ok, cancelled.status) == (True, "cancelled")
    assert (await huggingface.poll(submitted.id)).status == "cancelled"


async def test_close_cancels_jobs_in_flight(
    hf_settings: HuggingFaceSettings, http_options: AdapterOptions, fake: Fake
) -> None:
    adapter = HuggingFaceAdapter(hf_settings, api_key=Secret(TOKEN), options=http_options)
    fake.plan("infer", Scripted(200, [], delay_s=10))
    submitted = await adapter.submit(JOB)
    assert submitted.id is not None
    await adapter.aclose()
    assert (await adapter.poll(submitted.id)).status == "cancelled"


async def test_unknown_remote_id(huggingface: HuggingFaceAdapter) -> None:
    with pytest.raises(UnknownJobError, match="huggingface poll: no job 'hf-nope'"):
        await huggingface.poll("hf-nope")


async def test_malformed_management_answer(huggingface: HuggingFaceAdapter, fake: Fake) -> None:
    fake.plan("manage", Scripted(200, {"name": "llm", "status": {"url": None}}))
    with pytest.raises(MalformedResponseError, match=r"missing required field `state`"):
        await huggingface.health()


async def test_bad_token(hf_settings: HuggingFaceSettings, http_options: AdapterOptions) -> None:
    adapter = HuggingFaceAdapter(hf_settings, api_key=Secret("hf_wrong"), options=http_options)
    try:
        with pytest.raises(AuthError, match="Invalid credentials in Authorization header"):
            await adapter.submit(JOB)
    finally:
        await adapter.aclose()


async def test_per_job_target_is_refused(huggingface: HuggingFaceAdapter) -> None:
    with pytest.raises(InvalidJobError):
        await huggingface.submit(ProviderJob(input={}, target="other"))


async def test_raw_image_bytes_are_saved_as_an_artifact_and_reported(
    hf_settings: HuggingFaceSettings, http_options: AdapterOptions, fake: Fake, tmp_path: Path
) -> None:
    """Issue 8: an endpoint answering raw image bytes lost them; now they are saved, and
    the ended job is handed to ``on_result`` (the service records it in an event)."""
    reported: list[PollResult] = []

    async def on_result(result: PollResult) -> None:
        reported.append(result)

    options = dataclasses.replace(
        http_options, artifacts=ArtifactStore(tmp_path, 1024), on_result=on_result
    )
    adapter = HuggingFaceAdapter(hf_settings, api_key=Secret(TOKEN), options=options)
    fake.extra["image"] = True
    try:
        submitted = await adapter.submit(JOB)
        assert submitted.id is not None
        final = await adapter.wait(submitted.id)
    finally:
        await adapter.aclose()
    [saved] = final.saved
    assert saved.path == str(tmp_path / "huggingface" / submitted.id / "output.png")
    assert (saved.size, saved.content_type) == (8, "image/png")
    assert final.artifacts == [saved.path]
    assert final.output == {"content_type": "image/png", "bytes": 8, "path": saved.path}
    assert [r.status for r in reported] == ["done"] and reported[0].saved == [saved]
