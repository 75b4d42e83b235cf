"""The advisor's gateway routes on a real socket, in front of a real advisor,
store and nats-server: the issue's curl calls, providers, flags, bad bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from schemas.flags import DEFAULTS
from tests.advisor.service_support import (
    NO_GPU,
    ONE_GPU,
    PROFILE,
    Http,
    running_advisor,
    running_gateway,
)

pytestmark = pytest.mark.usefixtures("store")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends


@pytest.fixture
async def http(config) -> AsyncIterator[Http]:  # type: ignore[no-untyped-def]
    async with running_advisor(config, NO_GPU), running_gateway(config) as client:
        yield client


async def test_curl_gpu_list_debug(config):
    async with running_advisor(config, ONE_GPU), running_gateway(config) as http:
        status, body = await http.get("/api/gpu/list?debug=1")
    assert status == 200 and body["ok"] is True
    assert body["count"] == 1 and body["devices"][0]["name"] == "NVIDIA GeForce RTX 4090"
    assert body["flags"] == dict.fromkeys(DEFAULTS, False)  # every flag, all off by default
    assert {"features.enable_compute", "features.enable_public_gpu_adapters"} <= set(DEFAULTS)
    assert body["remote_enabled"] is False
    assert body["raw"]["host"]["cpu_count"] == 16 and body["raw"]["source"] == "recorded"


async def test_gpu_list_without_a_gpu_says_why(http):
    status, body = await http.get("/api/gpu/list")
    assert status == 200 and body["count"] == 0 and body["devices"] == []
    assert body["reason"] == "NVML unavailable: NVML Shared Library Not Found"
    assert body["raw"] is None


async def test_curl_compute_advise_debug(http):
    status, body = await http.post(
        "/api/compute/advise", raw=b'{"width":1024,"height":1024,"debug":true}', headers=FORM
    )
    assert status == 200 and body["ok"] is True
    assert (body["target"], body["rule"]) == ("wait", "wait_for_local_gpu")
    assert "Remote: not considered, features.enable_compute is off." in body["reason"]
    assert body["remote_considered"] is False
    details = body["details"]
    assert details["thresholds"]["remote"]["queue_saturated_at"] == 8
    assert details["derived"]["pixels"] == 1_048_576
    assert details["context"]["registry_version"] == 6
    assert details["context"]["flags"] == {"features.enable_compute": False}
    assert [c["rule"] for c in details["candidates"]] == [
        "local_gpu",
        "remote_cheapest",
        "cpu_small_job",
    ]


async def test_curl_compute_costs_debug(http):
    status, body = await http.post(
        "/api/compute/costs",
        raw=b'{"queue":"remote","duration_minutes":2,"debug":true}',
        headers=FORM,
    )
    assert status == 200 and body["ok"] is True
    assert body["informational"] is True and body["estimate"] > 0
    assert any("remote execution is disabled" in w for w in body["warnings"])
    assert any("no billing flows through gpuroute" in n for n in body["notes"])
    assert body["hints"] and len(body["comparison"]) == 5  # lan-box is disabled
    totals = [c["total_usd"] for c in body["comparison"]]
    assert totals == sorted(totals)
    assert body["registry"]["total"] == 6 and body["registry"]["by_kind"]["modal"] == 1


async def test_flag_put_changes_decisions(http):
    big = {"width": 1024, "height": 1024, "batch": 2}
    _, off = await http.post("/api/compute/advise", big)
    assert off["target"] == "wait" and "features.enable_compute is off" in off["reason"]
    status, flags = await http.put("/api/flags", {"flags": {"features.enable_compute": True}})
    assert status == 200 and flags["applied"] is True
    assert flags["flags"]["features.enable_compute"] is True
    assert flags["changed"] == ["features.enable_compute"]
    _, on = await http.post("/api/compute/advise", big)
    assert on["target"] == "remote" and on["provider_id"] and on["remote_considered"]
    _, costs = await http.post("/api/compute/costs", {"queue": "remote", "duration_minutes": 2})
    assert costs["informational"] is False and costs["warnings"] == []
    _, listed = await http.get("/api/flags")
    assert listed["flags"]["features.enable_compute"] is True
    assert listed["defaults"]["features.enable_compute"] is False
    assert listed["descriptions"]["features.enable_compute"]
    await http.put("/api/flags", {"flags": {"features.enable_compute": False}})
    _, again = await http.post("/api/compute/advise", big)
    assert again["target"] == "wait"


async def test_provider_crud_survives_an_advisor_restart(config):
    async with running_advisor(config), running_gateway(config) as http:
        status, made = await http.post("/api/providers", PROFILE)
        assert status == 201 and made["applied"] is True and made["id"] == "studio-box"
        status, body = await http.post("/api/providers", PROFILE)
        assert status == 409 and "exists" in body["error"]
        cheaper = {k: v for k, v in PROFILE.items() if k != "id"}
        cheaper["gpus"] = [{"gpu": "RTX 4090", "vram_gb": 24, "price_usd": 0.05}]
        status, put = await http.put("/api/providers/studio-box", cheaper)
        assert status == 200 and put["profile"]["gpus"][0]["price_usd"] == 0.05
        status, gone = await http.delete("/api/providers/modal")
        assert status == 200 and gone["applied"] is True
        _, before = await http.get("/api/providers")
    async with running_advisor(config), running_gateway(config) as http:
        _, after = await http.get("/api/providers")
        status, one = await http.get("/api/providers/studio-box")
        _, stats = await http.get("/api/providers/stats")
        status_gone, missing = await http.get("/api/providers/modal")
    assert after == before and after["version"] == 9
    ids = [p["id"] for p in after["providers"]]
    assert "studio-box" in ids and "modal" not in ids
    assert status == 200 and one["gpus"][0]["price_usd"] == 0.05
    assert status_gone == 404 and missing["error"] == "unknown provider 'modal'"
    assert stats["total"] == 6 and stats["by_kind"]["local_gpu"] == 2
    assert stats["by_kind"]["modal"] == 0 and stats["seeded"] is True
    assert stats["storage"] == str(config.events_db) and stats["persisted"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/api/compute/advise", b'{"width":"wide"}', 400, "at `$.width`"),
        ("POST", "/api/compute/advise", b'{"width":0}', 400, ">= 1 - at `$.width`"),
        ("POST", "/api/compute/advise", b'{"colour":"red"}', 400, "unknown field `colour`"),
        ("POST", "/api/compute/advise", b'{"kind":"music"}', 400, "at `$.kind`"),
        ("POST", "/api/compute/advise", b"width=1024", 400, "invalid body"),
        ("POST", "/api/compute/costs", b'{"queue":"nowhere","duration_minutes":1}', 404,
         "unknown provider 'nowhere'"),
        ("POST", "/api/compute/costs", b'{"queue":"remote"}', 400, "duration_minutes"),
        ("POST", "/api/compute/costs", b'{"job":{"width":-1}}', 400, "at `$.job.width`"),
        ("POST", "/api/providers", b'{"kind":"modal"}', 400, "missing required field `id`"),
        ("POST", "/api/providers", b'{"id":"x","kind":"cloud9","gpus":[],"price_snapshot":{}}',
         400, "at `$.kind`"),
        ("PUT", "/api/providers/p1", b'{"kind":"modal","gpus":[{"gpu":"L4","vram_gb":24,'
         b'"price_usd":-1}],"price_snapshot":{"date":"2026-01-01","source":"x"}}', 400,
         "at `$.gpus[0].price_usd`"),
        ("PUT", "/api/providers/p1", b'{"id":"p2","kind":"modal","gpus":[{"gpu":"L4",'
         b'"vram_gb":24,"price_usd":1}],"price_snapshot":{"date":"2026-01-01","source":"x"}}',
         400, "differs from the path's 'p1' - at `$.id`"),
        ("GET", "/api/providers/nope", None, 404, "unknown provider 'nope'"),
        ("DELETE", "/api/providers/nope", None, 404, "unknown provider 'nope'"),
        ("PUT", "/api/flags", b'{"flags":{"features.typo":true}}', 400,
         "unknown flag `features.typo`"),
        ("PUT", "/api/flags", b'{"flags":{"features.enable_compute":"yes"}}', 400,
         "at `$.flags[...]`"),
        ("GET", "/api/gpu/list?debug=maybe", None, 400, "$.debug"),
        ("GET", "/api/gpu/list?debug=1&verbose=1", None, 400, "unknown parameter `verbose`"),
        ("GET", "/api/providers?foo=1", None, 400, "unknown parameter `foo` (known: kind)"),
        ("GET", "/api/providers?kind=zzz", None, 400, "at `$.kind`"),
        ("GET", "/api/providers/stats?x=1", None, 400, "unknown parameter `x` (known: none)"),
        ("GET", "/api/providers/modal?x=1", None, 400, "unknown parameter `x`"),
        ("GET", "/api/flags?x=1", None, 400, "unknown parameter `x`"),
        ("POST", "/api/compute/advise", b'{"vram_gb":1e309}', 400, "at `$.vram_gb`"),
        ("POST", "/api/compute/advise", b'{"max_cost_usd":1e7}', 400, "at `$.max_cost_usd`"),
        ("POST", "/api/providers", b'{"id":"x","kind":"modal","gpus":[{"gpu":"L4","vram_gb":24,'
         b'"price_usd":1e308}],"price_snapshot":{"date":"2026-01-01","source":"x"}}', 400,
         "at `$.gpus[0].price_usd`"),
        ("POST", "/api/providers", b'{"id":"x","kind":"modal","gpus":[{"gpu":"L4","vram_gb":24,'
         b'"price_usd":1}],"price_snapshot":{"date":"2026-13-45","source":"x"}}', 400,
         "`date` '2026-13-45' is not a real date (YYYY-MM-DD) - at `$.price_snapshot`"),
    ],
)  # fmt: skip
async def test_bad_requests_name_the_field_and_are_never_500(
    http, method, path, body, status, needle
):
    got, reply = await http.call(method, path, raw=body)
    assert got == status, reply
    assert reply["ok"] is False and needle in reply["error"]


async def test_providers_of_one_kind_and_every_bad_query_parameter_named(http):
    status, modal = await http.get("/api/providers?kind=modal")
    assert status == 200 and [p["id"] for p in modal["providers"]] == ["modal"]
    status, body = await http.get("/api/providers?kind=zzz&foo=1")
    assert status == 400 and body["ok"] is False
    assert "unknown parameter `foo` (known: kind)" in body["error"]
    assert "at `$.kind`" in body["error"] and "zzz" in body["error"]


def profile_with(**changes: object) -> dict[str, object]:
    return {**PROFILE, **changes}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"notes": "n" * 10_000}, "Expected `str` of length <= 2000 - at `$.notes`"),
        ({"name": "n" * 1000}, "Expected `str` of length <= 128 - at `$.name`"),
        ({"base_url": "http://x/" + "a" * 3000}, "<= 2000 - at `$.base_url`"),
        ({"region": "r" * 200}, "<= 128 - at `$.region`"),
        ({"auth_fields": ["k"] * 100}, "Expected `array` of length <= 32 - at `$.auth_fields`"),
        ({"auth_fields": ["k" * 200]}, "<= 128 - at `$.auth_fields[0]`"),
        ({"gpus": PROFILE["gpus"] * 1000}, "Expected `array` of length <= 64 - at `$.gpus`"),
        ({"price_snapshot": {"date": "2026-11-30", "source": "s" * 3000}},
         "<= 2000 - at `$.price_snapshot.source`"),
        ({"price_snapshot": {"date": "2026-11-30", "source": "x", "note": "n" * 3000}},
         "<= 2000 - at `$.price_snapshot.note`"),
    ],
)  # fmt: skip
async def test_every_typed_field_of_a_provider_has_a_length_bound(http, changes, needle):
    """A 1 MB `notes` used to be stored (201), and a restarted advisor then never
    finished rebuilding."""
    status, body = await http.post("/api/providers", profile_with(**changes))
    assert status == 400 and needle in body["error"], body


async def test_a_megabyte_of_notes_is_refused(http):
    status, body = await http.post("/api/providers", profile_with(notes="n" * 1_000_000))
    assert 400 <= status < 500 and body["ok"] is False
    status, listed = await http.get("/api/providers")
    assert "studio-box" not in [p["id"] for p in listed["providers"]]


@pytest.mark.parametrize("provider_id", ["gpu", "stats", "local", "Bad Id", "a/b", "x" * 65])
async def test_a_provider_id_may_not_collide_with_a_route_or_be_no_slug(http, provider_id):
    """`gpu` was accepted: /api/providers/gpu is where the GPU provider routes live."""
    status, body = await http.post("/api/providers", profile_with(id=provider_id))
    assert status == 400, body
    assert "at `$.id`" in body["error"] or repr(provider_id) in body["error"]
    _, listed = await http.get("/api/providers")
    assert provider_id not in [p["id"] for p in listed["providers"]]


def test_every_route_under_providers_is_a_reserved_id():
    """A new literal route under /api/providers/ must not be a provider id too."""
    from schemas.providers import RESERVED_IDS
    from services.gateway.routes import TABLE

    segments = {
        r.path.removeprefix("/api/providers/").split("/")[0]
        for r in TABLE
        if r.path.startswith("/api/providers/")
    }
    literal = {s for s in segments if not s.startswith("{")}
    assert literal and literal <= RESERVED_IDS


async def test_flags_are_bounded(http):
    many = {f"features.f{i}": True for i in range(100)}
    status, body = await http.put("/api/flags", {"flags": many})
    assert status == 400 and "at `$.flags`" in body["error"]
    status, body = await http.put("/api/flags", {"flags": {"f" * 500: True}})
    assert status == 400 and "<= 128" in body["error"]


async def test_a_flags_put_that_changes_nothing_records_nothing(config):
    from tests.advisor.service_support import stored_events

    compute, adapters = "features.enable_compute", "features.enable_public_gpu_adapters"
    async with running_advisor(config, NO_GPU), running_gateway(config) as http:
        status, same = await http.put("/api/flags", {"flags": {compute: False}})  # the default
        assert status == 200 and same["changed"] == [] and same["event_id"] is None
        _, on = await http.put("/api/flags", {"flags": {compute: True}})
        assert on["changed"] == [compute] and on["applied"] is True
        _, again = await http.put("/api/flags", {"flags": {compute: True, adapters: True}})
        assert again["changed"] == [adapters] and again["flags"][adapters] is True
    changes = [e.payload.flags for _, e in stored_events(config.events_db, "flags.changed")]
    assert changes == [{compute: True}, {adapters: True}]


async def test_a_debug_cost_preview_has_the_registry_stats_of_the_stats_route(http, config):
    _, stats = await http.get("/api/providers/stats")
    status, preview = await http.post(
        "/api/compute/costs", {"queue": "remote", "duration_minutes": 2, "debug": True}
    )
    assert status == 200
    assert preview["registry"] == {k: v for k, v in stats.items() if k != "ok"}
    assert preview["registry"]["storage_path"] == str(config.events_db)
    assert preview["registry"]["persisted"] is True and preview["registry"]["total"] == 6
    _, plain = await http.post("/api/compute/costs", {"queue": "remote", "duration_minutes": 2})
    assert plain["registry"] is None
