"""The dashboard in a real browser (Debian's chromium through Playwright)
against a real stack: every panel loads with no console error, a submitted
job appears and succeeds without a reload, a delayed job shows its reason,
a job's page explains its decision and re-runs it with a threshold typed
there, live updates resume after a gateway restart with no gap and no
duplicate, and the cost chart moves while a dry-run pod runs. Each test
leaves ``screenshot.png`` in its tmp_path;
``GPUROUTE_SCREENSHOT_TO=docs/img/dashboard.png`` copies the overview taken
by the cost chart's test there (the README's picture comes from this run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from schemas import scheduler as sched
from services.gateway.dashboard import CSP
from services.gateway.routes import TABLE
from services.gateway.service import GatewayService
from services.runtime.bus import Bus

from .conftest import NO_GPU, Page, Stack, open_dashboard, running

pytestmark = pytest.mark.asyncio(loop_scope="module")

WIDER_THAN_390 = """[...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.scroll'))
    .slice(0, 5).map(e => `${e.tagName}#${e.id}.${e.className}`)"""
"""What sticks out of a phone's width outside a box that scrolls (the failure's words)."""

CLOUD_ROUTES = any(route.path == "/api/cloud/status" for route in TABLE)

BIG = {"kind": "image", "width": 1024, "height": 1024, "executor": "synthetic"}
"""Too big for the CPU and no GPU: the advisor says wait, the job is delayed."""


async def post(stack: Stack, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.post(stack.url + path, json=body) as r:
        doc = await r.json()
        assert r.status < 300, doc
        return doc


async def test_every_panel_loads_with_its_headers_and_no_console_error(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/dashboard", "/dashboard/app.js", "/dashboard/style.css"):
            async with http.get(stack.url + path) as r:
                assert r.status == 200, path
                assert r.headers["Content-Security-Policy"] == CSP
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                etag = r.headers["ETag"]
            async with http.get(stack.url + path, headers={"If-None-Match": etag}) as r:
                assert r.status == 304, path
        async with http.get(stack.url + "/dashboard/app.js") as r:
            assert r.content_type == "text/javascript"
    await open_dashboard(page, stack.url)
    p = page.page
    for panel in ("jobs", "gpus", "budgets", "cloud", "services", "settings"):
        await p.wait_for_function(
            f"!document.getElementById('{panel}-body').textContent.startsWith('Loading')"
        )
    assert NO_GPU in await p.text_content("#gpus-body")
    assert (
        "budget"
        not in (await p.text_content("#budgets-body") or "").lower().split("not running")[0][-1:]
    )
    await p.wait_for_selector("#services-table tr[data-key^='scheduler/']")
    await p.wait_for_selector("#flags input[type=checkbox]")
    await p.wait_for_selector("#adapters #copy-secrets")
    template = await p.input_value("#secrets-template")
    assert "[runpod]" in template and 'api_key = ""' in template
    await p.wait_for_selector("#events-table tr[data-key]")
    await p.screenshot(path=str(tmp_path / "overview.png"), full_page=True)


async def row_state(page: Page, job_id: str, state: str, timeout_ms: float = 15_000) -> None:
    await page.page.wait_for_function(
        "([id, state]) => document.querySelector(`#jobs-table tr[data-key='${id}'] .job-state`)"
        "?.textContent === state",
        arg=[job_id, state],
        timeout=timeout_ms,
    )


async def test_a_submitted_job_appears_and_succeeds_without_a_reload(
    stack: Stack, page: Page
) -> None:
    await open_dashboard(page, stack.url)
    await page.page.evaluate("window.sameDocument = true")
    job = {"kind": "other", "executor": "synthetic", "payload": {"duration_s": 0.4, "steps": 4}}
    accepted = await post(stack, "/api/jobs", job)
    await row_state(page, accepted["job_id"], "succeeded")
    assert await page.page.evaluate("window.sameDocument") is True  # live, not reloaded
    row = await page.page.text_content(f"#jobs-table tr[data-key='{accepted['job_id']}']")
    assert "100%" in (row or "") and "1/3" in (row or "")  # progress, attempts


async def test_a_delayed_job_shows_its_reason_and_its_page_explains_the_decision(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    await open_dashboard(page, stack.url)
    accepted = await post(stack, "/api/jobs", BIG)
    job_id = accepted["job_id"]
    try:
        await row_state(page, job_id, "delayed")
        why = await page.page.text_content(f"#jobs-table tr[data-key='{job_id}'] .job-why")
        assert why is not None and why.startswith("wait: ") and "Waiting for the local GPU" in why
        await page.page.click(f"#jobs-table tr[data-key='{job_id}'] a")
        p = page.page
        await p.wait_for_selector("#decision-rule")
        assert await p.text_content("#decision-rule") == "wait_for_local_gpu"
        assert "Waiting for the local GPU" in (await p.text_content("#decision-reason") or "")
        await p.wait_for_selector("#decision-candidates tr.ruled-out")
        numbers = await p.text_content("#decision-numbers") or ""
        assert "1048576 (1024x1024)" in numbers and NO_GPU in numbers
        ruled_out = await p.text_content("#decision-candidates") or ""
        assert "cpu" in ruled_out
        timeline = await p.text_content("#job-timeline") or ""
        assert "job.submitted" in timeline and "job.delayed" in timeline
        await p.fill("#whatif input[name=width]", "64")
        await p.fill("#whatif input[name=height]", "64")
        await p.click("#whatif button[type=submit]")
        await p.wait_for_selector("#whatif-result >> text=Changes")
        assert "cpu_small_job" in (await p.text_content("#whatif-result") or "")
        # what would change it: the recorded decision re-run with a threshold typed here
        mp = "#wwc-thresholds input[data-path='$.cpu.max_megapixels']"
        assert await p.input_value(mp) == "0.6"  # the advisor's own value
        await p.fill(mp, "-1")
        assert ">= 0" in (await p.text_content("#pf---cpu-max-megapixels-e") or "")
        await p.click("#wwc-form button[type=submit]")
        await p.wait_for_selector("#wwc-result >> text=Not sent")
        await p.fill(mp, "2")
        await p.click("#wwc-form button[type=submit]")
        await p.wait_for_selector("#wwc-verdict >> text=Changes")
        assert await p.text_content("#wwc-new-rule") == "cpu_small_job"
        assert "wait_for_local_gpu" in (await p.text_content("#wwc-compare") or "")
        await p.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    finally:
        await post(stack, f"/api/jobs/{job_id}/cancel", {})


async def test_live_updates_resume_after_a_gateway_restart_without_gap_or_duplicate(
    stack: Stack, page: Page
) -> None:
    p = page.page
    await open_dashboard(page, stack.url)
    await p.wait_for_selector("#live.on")
    await stack.stop_gateway()
    await p.wait_for_selector("#live.off")
    bus = await Bus.connect(stack.config.nats.url or "", source="test")
    try:  # while the gateway is down: straight to the scheduler over NATS
        job = {"kind": "other", "executor": "synthetic", "payload": {"duration_s": 0.1}}
        accepted = await bus.call(sched.SUBMIT, job, sched.JobAccepted, timeout=10)
    finally:
        await bus.close()
    await stack.start_gateway()
    await p.wait_for_selector("#live.on", timeout=15_000)
    page.errors.clear()  # a refused WebSocket and fetch while it was down are logged
    await row_state(page, accepted.job_id, "succeeded")
    seqs = await p.eval_on_selector_all(
        "#events-table tr[data-key]", "rows => rows.map(r => Number(r.dataset.key))"
    )
    assert len(seqs) == len(set(seqs)), "an event was shown twice"
    assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)), "an event is missing"
    types = await p.eval_on_selector_all(
        "#events-table tr[data-key] td:nth-child(3)", "cells => cells.map(c => c.textContent)"
    )
    assert "job.succeeded" in types


@pytest.mark.skipif(not CLOUD_ROUTES, reason="the cloud routes (issue 14) are not in this version")
async def test_the_cost_chart_moves_while_a_dry_run_pod_runs(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    p = page.page
    await open_dashboard(page, stack.url)
    await p.wait_for_selector("#cost-chart")
    before = await p.text_content("#cloud-today")
    spawned = await post(stack, "/api/cloud/spawn", {})
    pod = spawned["pod"]["id"]
    assert spawned["pod"]["dry_run"] is True
    await p.wait_for_selector(f"#pods-table tr[data-key='{pod}'] >> text=RUNNING")
    await p.wait_for_function(
        "before => document.getElementById('cloud-today').textContent !== before",
        arg=before,
        timeout=20_000,
    )
    points = await p.eval_on_selector_all(
        "#cost-chart table.chart-numbers tbody tr", "rows => rows.length"
    )
    assert points >= 2
    await p.screenshot(path=str(tmp_path / "cloud.png"), full_page=True)
    # the README's picture: the top of the overview once jobs ran and a pod costs money
    await p.evaluate("window.scrollTo(0, 0)")
    await p.set_viewport_size({"width": 1366, "height": 1000})
    await p.screenshot(path=str(tmp_path / "overview.png"))
    target = os.environ.get("GPUROUTE_SCREENSHOT_TO")
    if target:
        shutil.copyfile(tmp_path / "overview.png", target)
    await post(stack, "/api/cloud/shutdown-all", {})


async def test_a_phone_in_dark_mode_gets_one_column_and_keyboard_navigation(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True
    )
    try:
        page = Page(await context.new_page())
        await open_dashboard(page, stack.url)
        p = page.page
        await p.wait_for_selector("#services-table")
        width = await p.evaluate("document.documentElement.scrollWidth")
        wide = await p.evaluate(WIDER_THAN_390)
        assert width <= 390, f"the page is {width} px wide on a 390 px phone: {wide}"
        background = await p.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(22, 24, 27)"  # the dark palette
        await p.keyboard.press("Tab")
        assert await p.evaluate("document.activeElement.textContent") == "Skip to content"
        await p.keyboard.press("Enter")
        await p.keyboard.press("Tab")
        assert await p.evaluate("document.activeElement.id") == "jobs-state"
        await p.screenshot(path=str(tmp_path / "phone-dark.png"), full_page=True)
        assert page.errors == [], page.errors
    finally:
        await context.close()


async def test_a_gateway_with_a_token_is_asked_for_it_once(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    token = "dashboard-test-token-0123456789"
    config = msgspec.structs.replace(
        stack.config,
        gateway=msgspec.structs.replace(stack.config.gateway, token=token),
        http=msgspec.structs.replace(stack.config.http, port=0),
    )
    async with running(GatewayService, config, "gateway") as guarded:
        context = await browser.new_context(viewport={"width": 1366, "height": 900})
        try:
            page = Page(await context.new_page())
            p = page.page
            sockets: list[str] = []
            p.on("websocket", lambda ws: sockets.append(ws.url))
            await p.goto(guarded.url + "/")
            await p.wait_for_selector("#token-dialog[open]")
            page.errors.clear()  # the 401 that asked for it is logged
            await p.fill("#token-input", token)
            await p.click("#token-form button[type=submit]")
            await p.wait_for_selector("body[data-ready=true]")
            await p.wait_for_selector("#live.on")
            await p.wait_for_selector("#services-table")
            await p.reload()  # the same tab keeps it: not asked again
            await p.wait_for_selector("body[data-ready=true]")
            assert not await p.is_visible("#token-dialog")
            await p.wait_for_selector("#live.on")
            assert page.errors == [], page.errors
            assert len(sockets) == 2, sockets  # one per load: the token in the query is taken
            html = await p.content()
            assert token not in html
        finally:
            await context.close()
