"""RunPod adapter against the fake RunPod serverless API: mapping, retries, errors."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
from pathlib import Path

import pytest

from schemas.adapter_settings import RetryPolicy
from services.adapters.artifacts import ArtifactStore
from services.adapters.contract import ProviderJob
from services.adapters.errors import InvalidJobError
from services.adapters.options import AdapterOptions
from services.adapters.runpod import STATUS_MAP, RunPodAdapter, RunPodSettings
from services.runtime.provider_errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from services.runtime.secrets import Secret
from tests.adapters.adapter_fakes import TOKEN, Fake, Scripted
from tests.adapters.conftest import SleepRecorder

JOB = ProviderJob(input={"prompt": "a red fox"}, job_id="j1")


async def test_submit_sends_input_wrapped_with_bearer_auth(
    runpod: RunPodAdapter, fake: Fake
) -> None:
    result = await runpod.submit(JOB)
    assert (result.status, result.raw_status) == ("queued", "IN_QUEUE")
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/v2/ep-test/run")
    assert seen.body == {"input": {"prompt": "a red fox"}}
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_poll_walks_the_documented_states(runpod: RunPodAdapter) -> None:
    submitted = await runpod.submit(JOB)
    assert submitted.id is not None
    seen = [await runpod.poll(submitted.id) for _ in range(3)]
    assert [(p.status, p.raw_status) for p in seen] == [
        ("queued", "IN_QUEUE"),
        ("running", "IN_PROGRESS"),
        ("done", "COMPLETED"),
    ]
    assert seen[-1].artifacts == ["https://cdn.example/rp/out.png"]
    assert seen[-1].output == {"images": ["https://cdn.example/rp/out.png"], "seed": 7}
    assert "executed in 2300 ms" in seen[-1].logs


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("IN_QUEUE", "queued"),
        ("IN_PROGRESS", "running"),
        ("RUNNING", "running"),
        ("COMPLETED", "done"),
        ("FAILED", "failed"),
        ("CANCELLED", "cancelled"),
        ("TIMED_OUT", "timed_out"),
    ],
)
def test_every_documented_status_is_mapped(raw: str, ours: str) -> None:
    assert STATUS_MAP[raw] == ours


async def test_an_undocumented_status_is_surfaced_as_unknown(
    runpod: RunPodAdapter, fake: Fake
) -> None:
    fake.extra["flow"] = ["THROTTLED_SOMEHOW"]
    submitted = await runpod.submit(JOB)
    assert submitted.id is not None
    polled = await runpod.poll(submitted.id)
    assert (polled.status, polled.raw_status) == ("unknown", "THROTTLED_SOMEHOW")


async def test_failed_job_carries_the_error(runpod: RunPodAdapter, fake: Fake) -> None:
    fake.extra["flow"] = ["FAILED"]
    submitted = await runpod.submit(JOB)
    assert submitted.id is not None
    polled = await runpod.poll(submitted.id)
    assert (polled.status, polled.error) == ("failed", "CUDA out of memory")


async def test_cancel_and_health(runpod: RunPodAdapter) -> None:
    submitted = await runpod.submit(JOB)
    assert submitted.id is not None
    cancelled = await runpod.cancel(submitted.id)
    assert (cancelled.status, cancelled.raw_status) == ("cancelled", "CANCELLED")
    assert (await runpod.poll(submitted.id)).status == "cancelled"
    health = await runpod.health()
    assert (health.state, health.queue_depth, health.workers) == (
        "ready",
        2,
        {"idle": 1, "running": 1},
    )


@pytest.mark.parametrize(
    ("workers", "state"),
    [
        ({"idle": 0, "running": 0}, "scaled_to_zero"),
        ({"initializing": 1}, "starting"),
        ({"unhealthy": 2}, "down"),
        ({"ready": 1}, "ready"),
    ],
)
async def test_health_states(
    runpod: RunPodAdapter, fake: Fake, workers: dict[str, int], state: str
) -> None:
    fake.extra["health"] = {"jobs": {"inQueue": 0}, "workers": workers}
    assert (await runpod.health()).state == state


async def test_poll_honours_retry_after_on_429(
    runpod: RunPodAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    submitted = await runpod.submit(JOB)
    assert submitted.id is not None
    fake.plan("status", Scripted(429, {"error": "rate limited"}, {"Retry-After": "2"}))
    polled = await runpod.poll(submitted.id)
    assert polled.status == "queued"
    assert sleeps.delays == [2.0]


async def test_submit_is_retried_on_429_honouring_retry_after(
    runpod: RunPodAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    """A 429 on /run is RunPod's rate limit: refused before a job existed (issue 8)."""
    fake.plan("run", Scripted(429, {"error": "too many requests"}, {"Retry-After": "3"}))
    result = await runpod.submit(JOB)
    assert (result.ok, result.id) == (True, "rp-1")
    assert fake.count("POST /v2/ep-test/run") == 2 and sleeps.delays == [3.0]


async def test_submit_429s_past_the_retry_budget_are_a_rate_limit_error(
    runpod: RunPodAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.plan("run", *[Scripted(429, {"error": "too many requests"}, {"Retry-After": "3"})] * 3)
    with pytest.raises(RateLimitedError) as caught:
        await runpod.submit(JOB)
    assert caught.value.retry_after_s == 3.0
    assert fake.count("POST /v2/ep-test/run") == 3 and sleeps.delays == [3.0, 3.0]
    assert str(caught.value) == "runpod submit: HTTP 429: too many requests"


async def test_submit_is_not_retried_on_a_gateway_error(
    runpod: RunPodAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.plan("run", Scripted(502, "bad gateway", raw=True))
    with pytest.raises(ProviderUnavailableError):
        await runpod.submit(JOB)
    assert fake.count("POST /v2/ep-test/run") == 1 and sleeps.delays == []


async def test_deep_or_invalid_utf8_answers_are_malformed_not_a_crash(
    runpod: RunPodAdapter, fake: Fake
) -> None:
    """Every provider answer is decoded through schemas.limits (issue 8)."""
    deep = b'{"id": "rp-1", "status": "COMPLETED", "output": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    fake.plan("status", Scripted(200, deep, raw=True))
    with pytest.raises(MalformedResponseError, match=r"runpod poll: .*nested 5001 levels deep"):
        await runpod.poll("rp-1")
    fake.plan("status", Scripted(200, b'{"id": "rp-1", "status": "\xff\xfe"}', raw=True))
    with pytest.raises(MalformedResponseError, match=r"runpod poll: .*UTF-8"):
        await runpod.poll("rp-1")
    fake.plan("status", Scripted(500, b"[" * 5000, raw=True))
    with pytest.raises(ProviderHTTPError, match="runpod poll: HTTP 500"):
        await runpod.poll("rp-1")


async def test_gateway_errors_are_retried_with_backoff_then_raised(
    runpod: RunPodAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.plan("health", *[Scripted(503, "upstream down", raw=True)] * 3)
    with pytest.raises(ProviderUnavailableError) as caught:
        await runpod.health()
    assert caught.value.status == 503
    assert fake.count("GET /v2/ep-test/health") == 3
    assert len(sleeps.delays) == 2
    # equal jitter: half of 0.1 * 2**(n-1) fixed, half drawn
    assert 0.05 <= sleeps.delays[0] <= 0.1 and 0.1 <= sleeps.delays[1] <= 0.2


async def test_the_same_seed_gives_the_same_backoff(
    runpod_settings: RunPodSettings, fake: Fake
) -> None:
    runs = []
    for _ in range(2):
        recorder = SleepRecorder()
        options = AdapterOptions(
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.1),
            rng=random.Random(7),
            sleep=recorder,
        )
        adapter = RunPodAdapter(runpod_settings, api_key=Secret(TOKEN), options=options)
        fake.plan("health", *[Scripted(502, "bad gateway", raw=True)] * 3)
        with pytest.raises(ProviderUnavailableError):
            await adapter.health()
        await adapter.aclose()
        runs.append(recorder.delays)
    assert runs[0] == runs[1] and len(runs[0]) == 2


async def test_slow_poll_times_out(runpod_settings: RunPodSettings, fake: Fake) -> None:
    settings = RunPodSettings(
        endpoint_id="ep-test", base_url=runpod_settings.base_url, timeout_s=0.05
    )
    recorder = SleepRecorder()
    options = AdapterOptions(retry=RetryPolicy(max_attempts=2), sleep=recorder)
    adapter = RunPodAdapter(settings, api_key=Secret(TOKEN), options=options)
    fake.plan("status", *[Scripted(200, {"id": "x", "status": "IN_QUEUE"}, delay_s=5)] * 2)
    try:
        with pytest.raises(ProviderTimeoutError, match=r"runpod poll: no answer within 0\.05 s"):
            await adapter.poll("x")
    finally:
        fake.release.set()
        await adapter.aclose()
    assert len(recorder.delays) == 1  # a GET is retried once more, then given up


async def test_malformed_json_is_one_readable_error(runpod: RunPodAdapter, fake: Fake) -> None:
    fake.plan("status", Scripted(200, "{not json", raw=True))
    with pytest.raises(MalformedResponseError) as caught:
        await runpod.poll("rp-1")
    assert str(caught.value).startswith("runpod poll: unexpected response body: JSON is malformed")
    assert (caught.value.provider, caught.value.call) == ("runpod", "poll")


async def test_a_wrong_shape_names_the_json_path(runpod: RunPodAdapter, fake: Fake) -> None:
    fake.plan("run", Scripted(200, {"id": 17, "status": "IN_QUEUE"}))
    with pytest.raises(MalformedResponseError, match=r"Expected `str`, got `int` - at `\$.id`"):
        await runpod.submit(JOB)


async def test_bad_token_is_an_auth_error_without_the_token(
    runpod: RunPodAdapter, fake: Fake
) -> None:
    # a provider that echoes what it was sent, whole header and bare token
    echo = {"error": f"invalid key Bearer {TOKEN} (token {TOKEN})"}
    fake.plan("status", Scripted(401, echo))
    with pytest.raises(AuthError) as caught:
        await runpod.poll("rp-1")
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert str(caught.value) == "runpod poll: HTTP 401: invalid key *** (token ***)"


async def test_unknown_job_is_not_found(runpod: RunPodAdapter) -> None:
    with pytest.raises(NotFoundError, match="request does not exist"):
        await runpod.poll("nope")


async def test_a_remote_id_cannot_change_the_path(runpod: RunPodAdapter, fake: Fake) -> None:
    with pytest.raises(NotFoundError):
        await runpod.poll("../health")
    assert fake.requests[-1].path == "/v2/ep-test/status/..%2Fhealth"


async def test_per_job_target_is_refused(runpod: RunPodAdapter) -> None:
    with pytest.raises(InvalidJobError):
        await runpod.submit(ProviderJob(input={}, target="other-endpoint"))


async def test_refused_connection_is_retried_even_for_submit(sleeps: SleepRecorder) -> None:
    settings = RunPodSettings(endpoint_id="ep", base_url="http://127.0.0.1:9/v2", timeout_s=1)
    options = AdapterOptions(retry=RetryPolicy(max_attempts=2), sleep=sleeps)
    adapter = RunPodAdapter(settings, api_key=Secret(TOKEN), options=options)
    try:
        with pytest.raises(ProviderConnectionError, match="runpod submit: cannot connect"):
            await adapter.submit(JOB)
    finally:
        await adapter.aclose()
    assert len(sleeps.delays) == 1  # nothing was sent, so a second try was safe


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _file(path: str) -> tuple[bytes, int]:
    return Path(path).read_bytes(), Path(path).stat().st_mode & 0o777


async def test_inline_base64_images_are_saved_and_listed_as_artifacts(
    runpod_settings: RunPodSettings, http_options: AdapterOptions, fake: Fake, tmp_path: Path
) -> None:
    """Issue 8: worker-comfyui's base64 images, data URIs and bare base64 in ``output``
    are saved under <data-dir>/artifacts/runpod/<job>/ and listed; the limit holds."""
    b64 = base64.b64encode(PNG).decode()
    output = {
        "images": [{"filename": "../../ComfyUI_0001_.png", "type": "base64", "data": b64}],
        "preview": f"data:image/png;base64,{b64}",
        "raw": b64,
        "big": "data:image/png;base64," + base64.b64encode(b"x" * 5000).decode(),
        "seed": 7,
    }
    fake.plan("status", Scripted(200, {"id": "rp-1", "status": "COMPLETED", "output": output}))
    options = dataclasses.replace(http_options, artifacts=ArtifactStore(tmp_path, 4096))
    adapter = RunPodAdapter(runpod_settings, api_key=Secret(TOKEN), options=options)
    try:
        polled = await adapter.poll("rp-1")
    finally:
        await adapter.aclose()
    folder = tmp_path / "runpod" / "rp-1"
    names = [Path(item.path).name for item in polled.saved]
    assert names == ["ComfyUI_0001_.png", "output-preview.png", "output-raw.png"]
    assert all(Path(item.path).parent == folder for item in polled.saved)
    assert polled.artifacts == [item.path for item in polled.saved]
    for item in polled.saved:
        assert (item.size, item.content_type) == (len(PNG), "image/png")
        assert item.sha256 == hashlib.sha256(PNG).hexdigest()
        assert _file(item.path) == (PNG, 0o600)
    assert polled.output["images"][0] == {
        "filename": "../../ComfyUI_0001_.png",
        "type": "base64",
        "path": polled.saved[0].path,
    }
    assert polled.output["preview"] == polled.saved[1].path and polled.output["seed"] == 7
    assert polled.output["big"] == "(inline data left out; see logs)"
    assert any("'output-big'" in line and "over the artifact limit of 4096" in line
               for line in polled.logs)  # fmt: skip
