"""The dashboard in a real browser (Debian's chromium through Playwright)
against a real stack: every panel loads with no console error, a submitted
job appears and succeeds without a reload, a delayed job shows its reason,
a job's page explains its decision, live updates resume after a gateway
restart with no gap and no duplicate, and the cost chart moves while a
dry-run pod runs. Each test leaves ``screenshot.png`` in its tmp_path;
``GPUROUTE_SCREENSHOT_TO=docs/img/dashboard.png`` copies the overview's
there (the README's picture comes from this run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.gateway.dashboard import CSP

from .conftest import NO_GPU, Page, Stack, open_dashboard

pytestmark = pytest.mark.asyncio(loop_scope="module")

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
    target = os.environ.get("GPUROUTE_SCREENSHOT_TO")
    if target:
        shutil.copyfile(tmp_path / "overview.png", target)
