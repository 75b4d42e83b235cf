"""The live RunPod REST v2 pod client against the local stand-in: what it sends, how it
retries (Retry-After, RateLimit), and how every failure reads."""

from __future__ import annotations

import json
import logging

import msgspec
import pytest

from schemas.cloud import PodSpec, PodsSettings
from services.cloud.pods import (
    MalformedAnswer,
    PodNotFound,
    ProviderProblem,
    ProviderUnreachable,
    RateLimited,
    stuck,
)
from services.cloud.runpod_v2 import MAX_ANSWER_BYTES, RunPodV2Client
from services.runtime.http import ratelimit_wait
from services.runtime.secrets import Secret
from tests.cloud.conftest import API_KEY, SleepRecorder
from tests.cloud.runpod_v2_standin import RunPodV2Standin

SPEC = PodSpec(name="gpuroute-w1", image="runpod/worker-comfyui:5.5.0-base",
               gpu_id="NVIDIA GeForce RTX 4090", gpu_count=2, ports=["8188/http", "22/tcp"],
               env={"HF_TOKEN": "hf_envsecret"})  # fmt: skip
TOO_MANY = {"title": "Too Many Requests", "status": 429, "detail": "rate limit exceeded"}


async def test_create_sends_the_documented_body_with_the_bearer_key(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    created = await live_pods.create(SPEC)
    call = runpod_v2.calls[-1]
    assert (call.method, call.path, call.authorized) == ("POST", "/v2/pods", True)
    assert call.body == {
        "name": "gpuroute-w1", "image": "runpod/worker-comfyui:5.5.0-base",
        "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 2}, "cloud": "SECURE",
        "ports": ["8188/http", "22/tcp"], "env": {"HF_TOKEN": "hf_envsecret"},
    }  # fmt: skip
    assert (created.id, created.status, created.gpu_count) == ("standin0001", "PROVISIONING", 2)
    assert created.cost_per_hour == pytest.approx(0.88)


async def test_a_running_pod_reports_http_ports_at_the_proxy_and_tcp_at_its_ip(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    pod_id = (await live_pods.create(SPEC)).id
    runpod_v2.boot()
    info = await live_pods.get(pod_id)
    http, tcp = info.ports
    assert (http.private, http.protocol, http.url) == (
        8188,
        "http",
        f"http://127.0.0.1:9/{pod_id}/8188",
    )
    assert (tcp.private, tcp.public, tcp.ip, tcp.url) == (22, 40001, "127.0.0.1", None)


async def test_list_stop_and_delete(live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin) -> None:
    first, second = (await live_pods.create(SPEC)).id, (await live_pods.create(SPEC)).id
    runpod_v2.boot()
    stopped = await live_pods.stop(first)
    assert (stopped.status, stopped.cost_per_hour) == ("EXITED", 0.0)
    await live_pods.delete(second)
    assert runpod_v2.calls[-1].method == "DELETE"
    assert [(p.id, p.status) for p in await live_pods.list()] == [(first, "EXITED")]
    assert (await live_pods.get(second)).status == "TERMINATED"


async def test_a_429_waits_what_retry_after_says_then_succeeds(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin, pod_sleeps: SleepRecorder
) -> None:
    pod_id = (await live_pods.create(SPEC)).id
    runpod_v2.inject(429, TOO_MANY, headers={"Retry-After": "7"}, method="GET")
    assert (await live_pods.get(pod_id)).id == pod_id
    assert pod_sleeps.delays == [7.0]
    assert runpod_v2.count("GET", f"/v2/pods/{pod_id}") == 2


async def test_a_429_without_retry_after_waits_the_exhausted_ratelimit_window(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin, pod_sleeps: SleepRecorder
) -> None:
    limit = '"minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012'
    policy = '"minute";q=60;w=60, "hour";q=3000;w=3600'
    runpod_v2.inject(429, TOO_MANY, headers={"RateLimit": limit, "RateLimit-Policy": policy})
    await live_pods.create(SPEC)  # a create refused with 429 was not processed: retried
    assert pod_sleeps.delays == [12.0]
    assert runpod_v2.count("POST", "/v2/pods") == 2


async def test_429s_past_the_retry_budget_are_rate_limited_with_the_wait(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin, pod_sleeps: SleepRecorder
) -> None:
    runpod_v2.inject(429, TOO_MANY, headers={"Retry-After": "90"}, times=3)
    with pytest.raises(RateLimited) as caught:
        await live_pods.list()
    assert (caught.value.status, caught.value.retry_after_s) == (429, 90.0)
    assert caught.value.title == "Too Many Requests"
    assert "rate limit exceeded" in str(caught.value)
    assert pod_sleeps.delays == [30.0, 30.0]  # capped at max_retry_after_s


async def test_a_5xx_is_retried_on_a_read_but_never_on_a_create(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    runpod_v2.inject(503, {"title": "Service Unavailable", "status": 503, "detail": "upstream"})
    assert await live_pods.list() == []
    runpod_v2.inject(502, b"<html>bad gateway</html>", content_type="text/html")
    with pytest.raises(ProviderProblem) as caught:
        await live_pods.create(SPEC)  # a lost answer may hide a pod that bills
    assert caught.value.status == 502
    assert runpod_v2.count("POST", "/v2/pods") == 1
    assert runpod_v2.pods == {}


async def test_a_problem_json_error_names_status_title_detail_and_errors(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    detail = "no capacity for NVIDIA GeForce RTX 4090 in US-TX-3"
    runpod_v2.inject(400, {"title": "Bad Request", "status": 400, "detail": detail})
    with pytest.raises(ProviderProblem) as caught:
        await live_pods.create(SPEC)
    err = caught.value
    assert (err.status, err.title, err.call) == (400, "Bad Request", "create")
    assert (
        str(err)
        == "runpod create: HTTP 400 Bad Request: no capacity for NVIDIA GeForce RTX 4090 in US-TX-3"
    )
    invalid = ["$: additional properties 'bogus' not allowed"]
    runpod_v2.inject(422, {"title": "Unprocessable Entity", "status": 422,
                           "detail": "Request validation failed.", "errors": invalid})  # fmt: skip
    with pytest.raises(ProviderProblem, match="additional properties 'bogus'") as caught:
        await live_pods.create(SPEC)
    assert caught.value.errors == ["$: additional properties 'bogus' not allowed"]


async def test_a_terminate_the_pod_refuses_is_a_problem_not_a_silent_success(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    pod_id = (await live_pods.create(SPEC)).id
    runpod_v2.inject(409, {"title": "Conflict", "status": 409, "detail": "pod is locked"},
                     path=f"/v2/pods/{pod_id}/action")  # fmt: skip
    with pytest.raises(ProviderProblem, match="409 Conflict: pod is locked"):
        await live_pods.terminate(pod_id)
    assert (await live_pods.get(pod_id)).status == "PROVISIONING"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "JSON is malformed"),
        (b'{"id": "abc", "name": "x", "status": "SLEEPING", "cost": 0.1}', "SLEEPING"),
        (b'{"id": "../../etc", "name": "x", "status": "RUNNING", "cost": 0.1}', "id"),
        (b'{"id": "abc", "name": "x", "status": "RUNNING"}', "cost"),
        (b"[" * 100 + b"]" * 100, "nest"),
    ],
)
async def test_a_malformed_answer_names_the_call_and_what_is_wrong(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin, body: bytes, problem: str
) -> None:
    runpod_v2.inject(200, body)
    with pytest.raises(MalformedAnswer, match=problem) as caught:
        await live_pods.get("abc")
    assert str(caught.value).startswith("runpod get: ")


async def test_an_oversize_answer_is_refused_while_read(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    runpod_v2.inject(200, b" " * (MAX_ANSWER_BYTES + 1))
    with pytest.raises(MalformedAnswer, match="over the limit"):
        await live_pods.list()


async def test_a_pod_id_that_is_no_id_is_refused_before_any_call(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    with pytest.raises(PodNotFound, match="not a RunPod pod id"):
        await live_pods.terminate("../pods")
    assert runpod_v2.calls == []


async def test_an_unreachable_api_is_named(pods_settings: PodsSettings) -> None:
    settings = msgspec.structs.replace(
        pods_settings, base_url="http://127.0.0.1:9/v2", max_attempts=1
    )
    client = RunPodV2Client(settings, api_key=Secret(API_KEY))
    with pytest.raises(ProviderUnreachable, match="runpod list: cannot connect"):
        await client.list()
    await client.aclose()


async def test_the_key_is_never_logged_nor_in_an_error(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin, pods_settings: PodsSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    runpod_v2.inject(503, b"busy", times=2)
    await live_pods.list()
    echo = {"title": "Bad Request", "status": 400,
            "detail": f"bad header Bearer {API_KEY}; env HF_TOKEN=hf_envsecret"}  # fmt: skip
    runpod_v2.inject(400, echo)
    with pytest.raises(ProviderProblem) as echoed:
        await live_pods.create(SPEC)
    wrong = RunPodV2Client(pods_settings, api_key=Secret("rpa_WRONG"))
    with pytest.raises(ProviderProblem) as refused:
        await wrong.list()
    await wrong.aclose()
    assert refused.value.status == 401
    assert "***" in str(echoed.value)
    for text in (caplog.text, str(echoed.value), json.dumps(echoed.value.to_dict()),
                 repr(live_pods), str(refused.value)):  # fmt: skip
        assert API_KEY not in text
        assert "hf_envsecret" not in text


async def test_a_pod_running_with_an_empty_runtime_is_stuck_past_the_limit(
    live_pods: RunPodV2Client, runpod_v2: RunPodV2Standin
) -> None:
    pod_id = (await live_pods.create(SPEC)).id
    runpod_v2.break_pod(pod_id, "empty")
    runpod_v2.boot()
    info = await live_pods.get(pod_id)
    assert (info.status, info.ports) == ("RUNNING", [])
    assert stuck(info, first_seen_running_at=100.0, now=400.0, limit_s=300.0) is None
    reason = stuck(info, first_seen_running_at=100.0, now=401.0, limit_s=300.0)
    assert reason == (
        f"pod {pod_id} has been RUNNING for 301 s with no ports (limit 300 s): "
        "its container never came up"
    )
    runpod_v2.break_pod(pod_id, "error")
    assert stuck(await live_pods.get(pod_id), None, 0.0, 300.0) == f"pod {pod_id} is in ERROR"


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ('"minute";r=0;t=12, "hour";r=0;t=1812', "1812"),
        ('"minute";r=3;t=12', None),
        ('"minute";r=0;t=-5', None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_ratelimit_wait_is_the_latest_exhausted_window(
    header: str | None, wait: str | None
) -> None:
    assert ratelimit_wait(header) == wait
