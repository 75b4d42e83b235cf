"""The adapters service behind the gateway: a real nats-server, store, adapters service
and gateway, in front of local fake provider servers that follow each provider's API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.adapter_settings import (
    AdaptersSettings,
    ModalSettings,
    ReplicateSettings,
    RunPodSettings,
)
from schemas.adapters import SIMULATE, SUBMIT
from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from services.runtime.bus import Bus
from services.runtime.errors import ServiceCallError
from services.store.service import StoreService
from tests.adapters.adapter_fakes import MODAL_ID, MODAL_SECRET, TOKEN, Scripted
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

StackFactory = Callable[[AdaptersSettings], Awaitable[Stack]]
PROFILE = {
    "queue_s": [0, 1],
    "cold_start_s": [0, 1],
    "warm_probability": 0.5,
    "failure_rate": 0.0,
    "units_per_s": 1,
}
ARTIFACT = {
    "runpod": "https://cdn.example/rp/out.png",
    "huggingface": None,  # the fake endpoint answers text, no URL
    "replicate": "https://replicate.delivery/pbxt/out-0.png",
    "modal": "https://modal.example/out.png",
}


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
async def stacks(config: Any, store: Any, bus: Bus) -> AsyncIterator[StackFactory]:
    started: list[Stack] = []

    async def start(settings: AdaptersSettings) -> Stack:
        stack = await start_stack(config, settings, bus)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        await stop_stack(stack)


@pytest.fixture
async def live(stacks: StackFactory, providers: dict[str, Provider], tmp_path: Path) -> Stack:
    stack = await stacks(live_settings(providers, write_secrets(tmp_path)))
    await stack.set_flag(True)
    return stack


def _requests(providers: dict[str, Provider]) -> int:
    return sum(len(p.fake.requests) for p in providers.values())


@pytest.mark.parametrize("provider", ["runpod", "huggingface", "replicate", "modal"])
async def test_every_adapter_goes_live_through_the_gateway(
    live: Stack, providers: dict[str, Provider], provider: str
) -> None:
    submitted = await live.submit(provider, {"input": {"prompt": "fox", "steps": 4},
                                             "job_id": f"job-{provider}"})  # fmt: skip
    assert submitted.status == 200, submitted.raw
    body = submitted.json
    assert (body["ok"], body["dry_run"], body["provider"]) == (True, False, provider)
    remote_id = body["id"]
    polls = await live.poll_until_terminal(provider, remote_id)
    final = polls[-1].json
    assert (final["status"], final["dry_run"], final["id"]) == ("done", False, remote_id)
    if ARTIFACT[provider]:
        assert final["artifacts"] == [ARTIFACT[provider]]
    cancelled = await live.request(
        "POST", f"/api/providers/gpu/cancel/{remote_id}?provider={provider}"
    )
    assert cancelled.status == 200 and cancelled.json["ok"] is True
    health = await live.request("POST", "/api/providers/gpu/health", {"provider": provider})
    assert health.status == 200
    assert [(r["provider"], r["ok"], r["dry_run"]) for r in health.json["results"]] == [
        (provider, True, False)
    ]
    seen = providers[provider].fake.requests[0].headers
    if provider == "modal":
        assert (seen["Modal-Key"], seen["Modal-Secret"]) == (MODAL_ID, MODAL_SECRET)
    else:
        assert seen["Authorization"] == f"Bearer {TOKEN}"
    assert all(TOKEN.encode() not in r.raw and MODAL_SECRET.encode() not in r.raw
               for r in live.replies)  # fmt: skip


async def test_events_carry_provider_dry_run_remote_id_and_job_id(live: Stack) -> None:
    submitted = await live.submit("replicate", {"input": {"prompt": "x"}, "job_id": "job-7"})
    remote_id = submitted.json["id"]
    await live.poll_until_terminal("replicate", remote_id)
    await live.request("POST", "/api/providers/gpu/health", {"provider": "replicate"})
    # submitted (starting), starting -> running, running -> done, health
    events = await live.events(4)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    [sub] = by_type["adapter.submitted"]
    assert sub["key"] == "job-7" and sub["source"] == "adapters"
    assert {k: sub["data"][k] for k in ("provider", "dry_run", "ok", "remote_id", "job_id")} == {
        "provider": "replicate",
        "dry_run": False,
        "ok": True,
        "remote_id": remote_id,
        "job_id": "job-7",
    }
    changes = by_type["adapter.status_changed"]
    assert [(e["data"]["previous"], e["data"]["status"]) for e in changes] == [
        ("starting", "running"),
        ("running", "done"),
    ]
    done = by_type["adapter.status_changed"][-1]["data"]
    assert (done["remote_id"], done["job_id"], done["dry_run"]) == (remote_id, "job-7", False)
    assert done["artifacts"] == ["https://replicate.delivery/pbxt/out-0.png"]
    [health] = by_type["adapter.health_checked"]
    assert {k: health["data"][k] for k in ("provider", "dry_run", "ok", "state", "remote_id")} == {
        "provider": "replicate",
        "dry_run": False,
        "ok": True,
        "state": "ready",
        "remote_id": "acme/sdxl",
    }


async def test_missing_token_answers_dry_run_refusals(
    stacks: StackFactory, providers: dict[str, Provider]
) -> None:
    stack = await stacks(live_settings(providers, secrets_file=None))
    await stack.set_flag(True)
    for provider in providers:
        reply = await stack.submit(provider, {"input": {"prompt": "x"}})
        assert reply.status == 200
        assert reply.json == {
            "ok": False,
            "provider": provider,
            "dry_run": True,
            "reason": "missing token",
        }
        polled = await stack.poll(provider, "some-id")
        assert (polled.json["status"], polled.json["error"]) == ("unknown", "missing token")
    submitted = await stack.events(4)
    assert {e["type"] for e in submitted} == {"adapter.submitted"}  # no status from refusals
    assert all(e["data"]["reason"] == "missing token" for e in submitted)
    described = (await stack.request("GET", "/api/providers/gpu/providers")).json
    assert all(p["reasons"] == ["missing_token"] for p in described["providers"])
    assert _requests(providers) == 0


async def test_dry_run_mode_answers_mock_results_the_same_every_time(
    stacks: StackFactory, providers: dict[str, Provider], tmp_path: Path
) -> None:
    settings = live_settings(providers, write_secrets(tmp_path))
    settings = msgspec.structs.replace(
        settings, runpod=msgspec.structs.replace(settings.runpod, dry_run=True)
    )
    stack = await stacks(settings)
    await stack.set_flag(True)
    seeded = await stack.submit("runpod", {"input": {"prompt": "x"}, "seed": 7})
    assert seeded.json == {
        "ok": True,
        "provider": "runpod",
        "dry_run": True,
        "id": "mock-runpod-7",
        "status": "queued",
    }
    polled = await stack.poll("runpod", "mock-runpod-7")
    body = polled.json
    assert {k: body[k] for k in ("status", "artifacts", "logs", "dry_run")} == {
        "status": "done",
        "artifacts": [],
        "logs": ["Simulated completion"],
        "dry_run": True,
    }
    first = await stack.submit("runpod", {"input": {"prompt": "same"}})
    again = await stack.submit("runpod", {"input": {"prompt": "same"}})
    other = await stack.submit("runpod", {"input": {"prompt": "other"}})
    assert first.raw == again.raw and first.json["id"].startswith("mock-runpod-")
    assert other.json["id"] != first.json["id"]
    assert len(providers["runpod"].fake.requests) == 0


async def test_flag_flips_rebuild_the_registry_and_off_means_no_live_call(
    stacks: StackFactory, providers: dict[str, Provider], tmp_path: Path
) -> None:
    stack = await stacks(live_settings(providers, write_secrets(tmp_path)))
    job = {"input": {"prompt": "x"}, "seed": 1}
    off = await stack.submit("runpod", job)
    assert off.json["dry_run"] is True and "enable_public_gpu_adapters" in off.json["reason"]
    assert _requests(providers) == 0
    await stack.set_flag(True)
    described = (await stack.request("GET", "/api/providers/gpu/providers")).json
    assert described["live_calls_enabled"] is True and described["flags_position"] > 0
    assert {p["provider"]: p["mode"] for p in described["providers"]} == dict.fromkeys(
        providers, "live"
    )
    on = await stack.submit("runpod", job)
    assert (on.json["dry_run"], on.json["id"]) == (False, "rp-1")
    live_calls = _requests(providers)
    await stack.set_flag(False)
    for provider in providers:
        await stack.submit(provider, job)
        await stack.request("POST", "/api/providers/gpu/health", {"provider": provider})
    assert _requests(providers) == live_calls


async def test_flags_set_before_start_are_folded_once_the_store_answers(
    config: Any, bus: Bus, providers: dict[str, Provider], tmp_path: Path
) -> None:
    """The adapters service starts before the store: it retries, then folds the history."""
    stack = await start_stack(config, live_settings(providers, write_secrets(tmp_path)), bus)
    store = StoreService(await Bus.connect(config.nats.url, source="store"), config)
    try:
        await bus.emit(FlagsChanged(flags={ENABLE_PUBLIC_GPU_ADAPTERS: True}), key="flags")
        assert stack.adapters.live_calls_enabled is False
        await store.start()
        await stack.stored.folded(stack.adapters.follower, "flags.changed")
        assert stack.adapters.live_calls_enabled
        assert stack.adapters.flags_position == 1
        assert (await stack.submit("modal", {"input": {}})).json["dry_run"] is False
    finally:
        await stop_stack(stack)
        await store.stop()
        await store.bus.close()


async def test_providers_route_tells_a_new_user_what_is_missing(stacks: StackFactory) -> None:
    stack = await stacks(AdaptersSettings())
    reply = await stack.request("GET", "/api/providers/gpu/providers")
    assert reply.status == 200
    body = reply.json
    assert body["ok"] is True and body["live_calls_enabled"] is False
    assert (body["flag"], body["secrets_file"], body["secrets_file_state"]) == (
        "features.enable_public_gpu_adapters",
        None,
        "not_set",
    )
    described = {p["provider"]: p for p in body["providers"]}
    assert list(described) == ["runpod", "huggingface", "replicate", "modal"]
    modal = described["modal"]
    assert modal["mode"] == "dry_run"
    assert modal["reasons"] == ["missing_token", "missing_setting", "flag_off"]
    assert modal["missing_secrets"] == ["modal.token_id", "modal.token_secret"]
    assert modal["missing_settings"] == ["modal.base_url"]
    assert modal["env_vars"]["modal.token_id"] == ["GPUROUTE_MODAL_TOKEN_ID", "MODAL_TOKEN_ID"]
    assert modal["hint"] == (
        "dry-run; to go live with Modal: put modal.token_id in a secrets file (named by "
        "adapters.secrets_file in the config) (or set GPUROUTE_MODAL_TOKEN_ID or "
        "MODAL_TOKEN_ID); put modal.token_secret in a secrets file (named by "
        "adapters.secrets_file in the config) (or set GPUROUTE_MODAL_TOKEN_SECRET or "
        "MODAL_TOKEN_SECRET); set adapters.modal.base_url in the config; turn on "
        "features.enable_public_gpu_adapters (PUT /api/flags)"
    )
    assert described["huggingface"]["missing_settings"] == [
        "huggingface.namespace",
        "huggingface.name",
    ]


async def test_a_configured_but_absent_secrets_file_is_reported(
    stacks: StackFactory, tmp_path: Path
) -> None:
    stack = await stacks(AdaptersSettings(secrets_file=str(tmp_path / "nope.toml")))
    body = (await stack.request("GET", "/api/providers/gpu/providers")).json
    assert body["secrets_file_state"] == "missing"
    assert str(tmp_path / "nope.toml") in body["providers"][0]["hint"]


async def test_simulate_is_byte_identical_for_a_seed(stacks: StackFactory) -> None:
    stack = await stacks(AdaptersSettings())
    body = {"provider": "huggingface", "job": {"input": {"steps": 30}, "job_id": "j"}, "seed": 11}
    first = await stack.request("POST", "/api/providers/gpu/simulate", body)
    again = await stack.request("POST", "/api/providers/gpu/simulate", body)
    assert first.status == 200 and first.raw == again.raw
    transcript = first.json
    assert (transcript["provider"], transcript["seed"], transcript["units"]) == (
        "huggingface",
        11,
        30,
    )
    assert transcript["events"][0]["phase"] == "queued"
    assert transcript["decision"]["outcome"] in ("done", "failed")
    others = set()
    for seed in range(5):
        reply = await stack.request("POST", "/api/providers/gpu/simulate", {**body, "seed": seed})
        others.add(reply.raw)
    assert len(others) > 1


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("POST", "submit", {"provider": "lambda", "job": {"input": {}}}, "$.provider"),
        ("POST", "submit", {"provider": "runpod"}, "missing required field `job`"),
        ("POST", "submit", {"provider": "runpod", "job": {"input": {}, "colour": 1}},
         "unknown field `colour`"),
        ("POST", "submit", {"provider": "runpod", "job": {"input": "x"}}, "$.job.input"),
        ("POST", "submit", b"{not json", "invalid body"),
        ("POST", "submit", {"provider": "runpod", "job": {"input": {}}, "extra": 1},
         "unknown field `extra`"),
        ("GET", "poll/abc", None, "missing required field `provider`"),
        ("GET", "poll/abc?provider=nope", None, "$.provider"),
        ("POST", "cancel/abc?provider=modal&colour=red", None, "`colour`"),
        ("POST", "health", {"provider": 3}, "$.provider"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": "x"}, "$.seed"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1,
                              "profile": {**PROFILE, "failure_rate": 2}},
         "$.profile.failure_rate"),
        # the reviewer's body: was a 500 OverflowError, is a 400 naming the field
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1,
                              "profile": {**PROFILE, "queue_s": [0, 1e308],
                                          "cold_start_s": [0, 1e308]}},
         "$.profile.queue_s[1]"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1,
                              "profile": {**PROFILE, "units_per_s": 1e-300}},
         "$.profile.units_per_s"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1,
                              "profile": {**PROFILE, "queue_s": [2, 1]}},
         "queue_s must be 0 <= low <= high"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {"steps": 10**12}},
                              "seed": 1},
         "job.input.steps must be at most"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 2**64},
         "$.seed"),
        ("POST", "submit", {"provider": "modal", "job": {"input": {}, "seed": -(2**64)}},
         "$.job.seed"),
        ("POST", "simulate",
         b'{"provider":"modal","job":{"input":{}},"seed":1,"profile":{"queue_s":[0,1e309],'
         b'"cold_start_s":[0,1],"warm_probability":0,"failure_rate":0,"units_per_s":1}}',
         "$.profile.queue_s[1]"),
        ("POST", "simulate",
         b'{"provider":"modal","job":{"input":{}},"seed":1,"profile":{"queue_s":[0,1],'
         b'"cold_start_s":[0,1],"warm_probability":0,"failure_rate":0,"units_per_s":1e309}}',
         "$.profile.units_per_s"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_400_naming_the_field(
    stacks: StackFactory, method: str, path: str, body: Any, needle: str
) -> None:
    stack = await stacks(AdaptersSettings())
    raw = body if isinstance(body, bytes) else None
    reply = await stack.request(method, f"/api/providers/gpu/{path}", None if raw else body, raw)
    assert reply.status == 400, reply.raw
    assert reply.json["ok"] is False and needle in reply.json["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("POST", "health", {"provider": "modal", "colour": 1}, "unknown field `colour`"),
        ("POST", "health", {"colour": 1}, "unknown field `colour`"),
        ("POST", "submit", {"provider": "modal", "job": {"input": {}}, "colour": 1},
         "unknown field `colour`"),
        ("POST", "submit", {"provider": "modal", "job": {"input": {}, "colour": 1}},
         "unknown field `colour` - at `$.job`"),
        ("GET", "poll/abc?provider=modal", {"colour": 1}, "unknown field `colour`"),
        ("POST", "cancel/abc?provider=modal", {"provider": "modal"}, "unknown field `provider`"),
        ("GET", "providers", {"colour": 1}, "unknown field `colour`"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1, "colour": 1},
         "unknown field `colour`"),
        ("POST", "simulate", {"provider": "modal", "job": {"input": {}}, "seed": 1,
                              "profile": {**PROFILE, "colour": 1}},
         "unknown field `colour` - at `$.profile`"),
    ],
)  # fmt: skip
async def test_every_route_refuses_an_unknown_body_field(
    stacks: StackFactory, method: str, path: str, body: Any, needle: str
) -> None:
    """Each of the six routes decodes its body strictly (the three that take no body
    refuse one with a field rather than ignore it); an absent body or ``{}`` is fine."""
    stack = await stacks(AdaptersSettings())
    reply = await stack.request(method, f"/api/providers/gpu/{path}", body)
    assert reply.status == 400, reply.raw
    assert reply.json["ok"] is False
    assert "invalid body" in reply.json["error"] and needle in reply.json["error"]
    if path in ("health", "providers") or path.startswith(("poll/", "cancel/")):
        for empty in (None, {}):
            reply = await stack.request(method, f"/api/providers/gpu/{path}", empty)
            assert reply.status == 200, reply.raw


async def test_bad_nats_requests_get_400_and_the_service_keeps_answering(
    stacks: StackFactory, bus: Bus
) -> None:
    stack = await stacks(AdaptersSettings())
    for payload, needle in ((b'{"provider": 1}', "$.provider"), (b"[", "invalid request")):
        with pytest.raises(ServiceCallError) as caught:
            await bus.call_raw(SUBMIT, payload)
        assert caught.value.code == 400 and needle in caught.value.description
    reply = await stack.submit("modal", {"input": {}, "seed": 2})
    assert reply.status == 200 and reply.json["reason"] == "missing token"


async def test_an_absurd_profile_over_nats_is_a_400_not_a_500(
    stacks: StackFactory, bus: Bus
) -> None:
    await stacks(AdaptersSettings())
    profile = {**PROFILE, "queue_s": [0, 1e308], "cold_start_s": [0, 1e308]}
    body = {"provider": "modal", "job": {"input": {}}, "seed": 1, "profile": profile}
    with pytest.raises(ServiceCallError) as caught:
        await bus.call_raw(SIMULATE, msgspec.json.encode(body))
    assert caught.value.code == 400 and "$.profile.queue_s[1]" in caught.value.description


async def test_provider_errors_are_clear_json_never_500(
    live: Stack, providers: dict[str, Provider]
) -> None:
    providers["replicate"].fake.plan(
        "POST /models/acme/sdxl/predictions",
        *[Scripted(status=429, body={"detail": "slow down"}, headers={"Retry-After": "7"})] * 2,
    )  # two tries (FAST_RETRY), then the 429 is the caller's
    limited = await live.submit("replicate", {"input": {}, "job_id": "job-429"})
    assert limited.status == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json == {
        "ok": False,
        "error": "replicate submit: HTTP 429: slow down",
        "kind": "RateLimitedError",
        "provider": "replicate",
        "call": "submit",
        "reason": "HTTP 429: slow down",
        "provider_status": 429,
        "retry_after_s": 7.0,
    }
    providers["runpod"].fake.plan("run", Scripted(status=500, body={"error": "boom"}))
    failed = await live.submit("runpod", {"input": {}})
    assert failed.status == 502
    assert (failed.json["kind"], failed.json["provider_status"]) == ("ProviderHTTPError", 500)
    submitted = await live.submit("runpod", {"input": {}})
    providers["runpod"].fake.plan("status", Scripted(status=200, body="<html>", raw=True))
    malformed = await live.poll("runpod", submitted.json["id"])
    assert malformed.status == 502 and malformed.json["kind"] == "MalformedResponseError"
    assert "runpod poll: unexpected response body" in malformed.json["error"]
    unknown = await live.poll("huggingface", "hf-nope")
    assert unknown.status == 404 and unknown.json["kind"] == "UnknownJobError"
    gone = await live.poll("runpod", "rp-999")
    assert gone.status == 404 and gone.json["kind"] == "NotFoundError"
    [event] = [e for e in await live.events(2, "adapter.submitted") if e["key"] == "job-429"]
    assert (event["data"]["ok"], event["data"]["error"]) == (False, "RateLimitedError")
    assert all(reply.status != 500 for reply in live.replies)


async def test_a_provider_timeout_is_a_504(
    stacks: StackFactory, providers: dict[str, Provider], tmp_path: Path
) -> None:
    settings = live_settings(providers, write_secrets(tmp_path))
    settings = msgspec.structs.replace(settings, modal=ModalSettings(
        base_url=providers["modal"].url(), timeout_s=0.2))  # fmt: skip
    stack = await stacks(settings)
    await stack.set_flag(True)
    providers["modal"].fake.plan("submit", Scripted(delay_s=5.0, body={"call_id": "fc-late"}))
    reply = await stack.submit("modal", {"input": {}})
    assert reply.status == 504 and reply.json["kind"] == "ProviderTimeoutError"


async def test_a_slow_provider_does_not_hold_up_another(
    live: Stack, providers: dict[str, Provider]
) -> None:
    providers["modal"].fake.plan("submit", Scripted(delay_s=5.0, body={"call_id": "fc-slow"}))
    slow = asyncio.create_task(live.submit("modal", {"input": {}}))
    await poll(lambda: providers["modal"].fake.count("POST /submit") == 1)
    fast = await live.submit("runpod", {"input": {}})
    assert fast.status == 200 and not slow.done()
    providers["modal"].fake.release.set()
    assert (await slow).json["id"] == "fc-slow"


async def test_health_of_every_provider_reports_failures_as_results(
    live: Stack, providers: dict[str, Provider]
) -> None:
    providers["runpod"].fake.plan("health", *[Scripted(status=503, body="down")] * 2)
    reply = await live.request("POST", "/api/providers/gpu/health")
    assert reply.status == 200
    results = {r["provider"]: r for r in reply.json["results"]}
    assert list(results) == ["runpod", "huggingface", "replicate", "modal"]
    assert (results["runpod"]["ok"], results["runpod"]["state"]) == (False, "down")
    assert results["runpod"]["error"] == "ProviderUnavailableError"
    assert all(results[p]["ok"] for p in ("huggingface", "replicate", "modal"))
    events = await live.events(4, "adapter.health_checked")
    assert {e["data"]["provider"]: e["data"]["ok"] for e in events}["runpod"] is False


async def test_settings_other_than_endpoints_come_from_config(
    stacks: StackFactory, providers: dict[str, Provider], tmp_path: Path
) -> None:
    """Replicate's deployment form and RunPod's base URL are taken from the settings."""
    settings = live_settings(providers, write_secrets(tmp_path))
    settings = msgspec.structs.replace(
        settings,
        replicate=ReplicateSettings(deployment="acme/prod", base_url=providers["replicate"].url()),
        runpod=RunPodSettings(endpoint_id="ep-other", base_url=providers["runpod"].url("/v2")),
    )
    stack = await stacks(settings)
    await stack.set_flag(True)
    await stack.submit("replicate", {"input": {}})
    await stack.submit("runpod", {"input": {}})
    assert providers["replicate"].fake.requests[0].path == "/v1/deployments/acme/prod/predictions"
    assert providers["runpod"].fake.requests[0].path == "/v2/ep-other/run"
