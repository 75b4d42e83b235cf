"""Replicate adapter against the fake Replicate API: routes, statuses, 429s, errors."""

from __future__ import annotations

import pytest

from services.adapters.contract import ProviderJob
from services.adapters.errors import InvalidJobError
from services.adapters.options import AdapterOptions
from services.adapters.replicate import (
    STATUS_MAP,
    ReplicateAdapter,
    ReplicateSettings,
    _progress,
)
from services.runtime.provider_errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    ProviderUnavailableError,
    RateLimitedError,
)
from services.runtime.secrets import Secret
from tests.adapters.adapter_fakes import TOKEN, Fake, Scripted
from tests.adapters.conftest import SleepRecorder

JOB = ProviderJob(input={"prompt": "a lighthouse"}, job_id="j7")


async def _adapter(base: ReplicateSettings, http: AdapterOptions, **route: str) -> ReplicateAdapter:
    settings = ReplicateSettings(base_url=base.base_url, timeout_s=2.0, **route)
    return ReplicateAdapter(settings, api_token=Secret(TOKEN), options=http)


@pytest.mark.parametrize(
    ("route", "path", "body_extra"),
    [
        ({"model": "acme/sdxl"}, "/v1/models/acme/sdxl/predictions", {}),
        ({"deployment": "acme/prod"}, "/v1/deployments/acme/prod/predictions", {}),
        ({"version": "5c7d5dc6dd8bf75c"}, "/v1/predictions", {"version": "5c7d5dc6dd8bf75c"}),
    ],
)
async def test_each_documented_create_route(
    replicate_settings: ReplicateSettings,
    http_options: AdapterOptions,
    fake: Fake,
    route: dict[str, str],
    path: str,
    body_extra: dict[str, str],
) -> None:
    adapter = await _adapter(replicate_settings, http_options, **route)
    try:
        result = await adapter.submit(JOB)
    finally:
        await adapter.aclose()
    assert (result.status, result.raw_status) == ("starting", "starting")
    seen = fake.requests[-1]
    assert (seen.method, seen.path) == ("POST", path)
    assert seen.body == {"input": {"prompt": "a lighthouse"}, **body_extra}
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_a_job_target_overrides_the_configured_model(
    replicate: ReplicateAdapter, fake: Fake
) -> None:
    await replicate.submit(ProviderJob(input={}, target="other/flux"))
    assert fake.requests[-1].path == "/v1/models/other/flux/predictions"
    await replicate.submit(ProviderJob(input={}, target="other/flux:abc123"))
    assert fake.requests[-1].path == "/v1/predictions"
    assert fake.requests[-1].body == {"version": "abc123", "input": {}}


@pytest.mark.parametrize("target", ["noslash", "a/b/c", "/name", "owner/"])
async def test_a_bad_target_is_refused_before_any_call(
    replicate: ReplicateAdapter, fake: Fake, target: str
) -> None:
    with pytest.raises(InvalidJobError, match="must read owner/name"):
        await replicate.submit(ProviderJob(input={}, target=target))
    assert fake.requests == []


def test_settings_say_what_is_missing() -> None:
    assert ReplicateSettings().missing() == [
        "replicate.model (or replicate.version or replicate.deployment)"
    ]
    assert ReplicateSettings(model="a/b", version="v").missing() == [
        "only one of replicate.model, replicate.version"
    ]


async def test_poll_maps_statuses_logs_progress_and_output(replicate: ReplicateAdapter) -> None:
    submitted = await replicate.submit(JOB)
    assert submitted.id is not None
    first, second, third = [await replicate.poll(submitted.id) for _ in range(3)]
    assert first.status == "starting"
    assert (second.status, second.progress) == ("running", 0.5)
    assert second.logs[0] == "loading weights"
    assert (third.status, third.raw_status, third.progress) == ("done", "succeeded", 1.0)
    assert third.artifacts == ["https://replicate.delivery/pbxt/out-0.png"]


@pytest.mark.parametrize(
    ("raw", "ours"),
    [
        ("starting", "starting"),
        ("processing", "running"),
        ("succeeded", "done"),
        ("failed", "failed"),
        ("canceled", "cancelled"),
        ("aborted", "timed_out"),
    ],
)
def test_every_documented_status_is_mapped(raw: str, ours: str) -> None:
    assert STATUS_MAP[raw] == ours


async def test_undocumented_status_is_unknown(replicate: ReplicateAdapter, fake: Fake) -> None:
    fake.extra["flow"] = ["queued_for_gpu"]
    submitted = await replicate.submit(JOB)
    assert submitted.id is not None
    polled = await replicate.poll(submitted.id)
    assert (polled.status, polled.raw_status) == ("unknown", "queued_for_gpu")


async def test_failed_prediction_carries_its_error(replicate: ReplicateAdapter, fake: Fake) -> None:
    fake.extra["flow"] = ["failed"]
    submitted = await replicate.submit(JOB)
    assert submitted.id is not None
    polled = await replicate.poll(submitted.id)
    assert (polled.status, polled.error) == ("failed", "NSFW content detected")


async def test_cancel_posts_to_the_cancel_url(replicate: ReplicateAdapter, fake: Fake) -> None:
    submitted = await replicate.submit(JOB)
    assert submitted.id is not None
    result = await replicate.cancel(submitted.id)
    assert (result.status, result.raw_status) == ("cancelled", "canceled")
    assert fake.requests[-1].path == f"/v1/predictions/{submitted.id}/cancel"


async def test_health_uses_the_account_route(replicate: ReplicateAdapter, fake: Fake) -> None:
    health = await replicate.health()
    assert (health.ok, health.state, health.raw_state) == (True, "ready", "user")
    assert fake.requests[-1].path == "/v1/account"


THROTTLED = {"detail": "Request was throttled. Expected available in 1 second.", "status": 429}


async def test_a_throttled_create_is_retried_after_retry_after(
    replicate: ReplicateAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    """A 429 on create means no prediction was made: it is retried (issue 8)."""
    fake.plan("POST /models/acme/sdxl/predictions", Scripted(429, THROTTLED, {"Retry-After": "1"}))
    submitted = await replicate.submit(JOB)
    assert (submitted.ok, submitted.id) == (True, "rep-1")
    assert sleeps.delays == [1.0] and fake.count("POST /v1/models") == 2


async def test_create_gives_up_after_the_retry_budget(
    replicate: ReplicateAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    fake.plan("POST /models/acme/sdxl/predictions",
              *[Scripted(429, THROTTLED, {"Retry-After": "1"})] * 3)  # fmt: skip
    with pytest.raises(RateLimitedError) as caught:
        await replicate.submit(JOB)
    assert caught.value.retry_after_s == 1.0 and sleeps.delays == [1.0, 1.0]
    assert "Request was throttled" in str(caught.value)
    assert fake.count("POST /v1/models") == 3  # max_attempts
    assert fake.jobs == {}


async def test_create_is_not_retried_on_503(
    replicate: ReplicateAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    """A 503 may come after the prediction was made: a second create could duplicate it."""
    fake.plan("POST /models/acme/sdxl/predictions", Scripted(503, "busy", raw=True))
    with pytest.raises(ProviderUnavailableError):
        await replicate.submit(JOB)
    assert fake.count("POST /v1/models") == 1 and sleeps.delays == []


async def test_get_is_retried_after_retry_after(
    replicate: ReplicateAdapter, fake: Fake, sleeps: SleepRecorder
) -> None:
    submitted = await replicate.submit(JOB)
    assert submitted.id is not None
    route = f"GET /predictions/{submitted.id}"
    fake.plan(
        route,
        Scripted(429, THROTTLED, {"Retry-After": "1"}),
        Scripted(429, THROTTLED, {"Retry-After": "60"}),
    )
    assert (await replicate.poll(submitted.id)).status == "starting"
    assert sleeps.delays == [1.0, 5.0]  # Retry-After is capped at max_retry_after_s


async def test_problem_details_become_the_reason(replicate: ReplicateAdapter) -> None:
    with pytest.raises(NotFoundError, match=r"replicate poll: HTTP 404: Not found\."):
        await replicate.poll("missing")


async def test_wrong_token_is_an_auth_error(
    replicate_settings: ReplicateSettings, http_options: AdapterOptions
) -> None:
    adapter = ReplicateAdapter(
        replicate_settings, api_token=Secret("r8_wrong"), options=http_options
    )
    try:
        with pytest.raises(AuthError, match="did not pass a valid authentication token"):
            await adapter.health()
    finally:
        await adapter.aclose()


async def test_a_prediction_without_status_is_malformed(
    replicate: ReplicateAdapter, fake: Fake
) -> None:
    fake.plan("GET /predictions/p1", Scripted(200, {"id": "p1"}))
    with pytest.raises(MalformedResponseError, match=r"missing required field `status`"):
        await replicate.poll("p1")


@pytest.mark.parametrize(
    ("line", "progress"),
    [("45%|####   | 9/20", 0.45), ("100%|#####| 20/20", 1.0), ("250%|#| 5/2", 1.0),
     ("9" * 5000 + "%|#| 1/2", None)],
)  # fmt: skip
def test_progress_is_a_fraction_from_a_tqdm_line(line: str, progress: float | None) -> None:
    """A bogus log line never yields a progress past 1, nor an int() over 4300 digits."""
    assert _progress(["loading", line]) == progress
