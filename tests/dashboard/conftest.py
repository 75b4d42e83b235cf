"""The dashboard's browser tests: one stack and one headless Chromium per module.

The stack is what ``gpuroute up`` runs (store, adapters dry-run, advisor,
budget, telemetry, scheduler, the cloud service when this version has it, and
the gateway), in-process against a nats-server of the module, with the
gateway on a fixed free port so that a restarted gateway is the same origin
for the page. Telemetry is recorded (no GPU, with its reason), so a 1024x1024
image waits for a GPU on every machine, a GPU box included.

The browser is Debian's ``chromium`` driven by Playwright with
``executable_path`` (``playwright install`` downloads a browser, which this
project never does). Missing, it is installed with apt-get when the tests run
as root, else the tests skip naming the command to run. Each page records its
console errors and uncaught exceptions; ``console_errors`` fails a test that
saw any.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from schemas.telemetry import HostStats, TelemetrySample
from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.config import Config, load_config
from services.runtime.natsserver import EmbeddedNats
from services.telemetry.sources import RecordedTelemetry
from tests.gateway.conftest import running
from tests.support import free_port

NO_GPU = "no GPU in this test (recorded telemetry)"


def chromium() -> str:
    """Debian's chromium, installed now if missing and we may; else a skip."""
    found = shutil.which("chromium")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        command = ["apt-get", "install", "-y", "-qq", "chromium"]
        subprocess.run(command, check=False, timeout=600, capture_output=True)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("no chromium: install Debian's package (sudo apt-get install -y chromium)")
    return found


class Stack:
    """The services of the module; ``restart_gateway`` replaces the gateway on its port."""

    def __init__(self, config: Config, exits: contextlib.AsyncExitStack) -> None:
        self.config = config
        self.exits = exits
        self.gateway: GatewayService | None = None
        self._gateway_exit: contextlib.AsyncExitStack | None = None
        self.cloud = False

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    async def start_gateway(self) -> None:
        self._gateway_exit = contextlib.AsyncExitStack()
        self.gateway = await self._gateway_exit.enter_async_context(
            running(GatewayService, self.config, "gateway")
        )

    async def stop_gateway(self) -> None:
        assert self._gateway_exit is not None
        await self._gateway_exit.aclose()
        self._gateway_exit = None


@pytest.fixture(scope="module")
def nats_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=0)
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    nats_module: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    from services.adapters.service import AdaptersService
    from services.advisor.service import AdvisorService
    from services.budget.service import BudgetService
    from services.scheduler.service import SchedulerService
    from services.store.service import StoreService
    from services.telemetry.service import TelemetryService

    config = load_config(data_dir=str(tmp_path_factory.mktemp("data")), nats__url=nats_module.url,
                         http__port=free_port(), heartbeat_s=0.5)  # fmt: skip
    config.advisor.telemetry_interval_s = 3600
    config.telemetry.interval_s = 1.0
    config.gateway.request_timeout_s = 5.0
    if hasattr(config, "cloud"):  # issue 14: pods boot and cost money within the test
        pods = msgspec.structs.replace(config.cloud.pods, dry_boot_s=0.2, dry_run=True)
        config.cloud = msgspec.structs.replace(config.cloud, check_interval_s=0.5, pods=pods)
    bus = await Bus.connect(nats_module.url, source="test")
    await bus.ensure_streams()
    await bus.close()
    host = HostStats(cpu_percent=12.5, cpu_count=16, ram_total_mib=65536, ram_available_mib=40960)
    none = TelemetrySample(sample_id="r", ts=0.0, host=host, reason=NO_GPU, source="recorded")
    async with contextlib.AsyncExitStack() as exits:
        stack = Stack(config, exits)
        await exits.enter_async_context(running(StoreService, config, "store"))
        await exits.enter_async_context(running(AdaptersService, config, "adapters"))
        await exits.enter_async_context(running(AdvisorService, config, "advisor"))
        recorded = functools.partial(TelemetryService, source=RecordedTelemetry([none]))
        await exits.enter_async_context(running(recorded, config, "telemetry"))
        budget = await exits.enter_async_context(running(BudgetService, config, "budget"))
        await budget.follower.wait_ready(10)
        with contextlib.suppress(ImportError):  # the cloud service of issue 14, once it lands
            from services.cloud.service import CloudService  # type: ignore[import-not-found,unused-ignore]

            await exits.enter_async_context(running(CloudService, config, "cloud"))
            stack.cloud = True
        scheduler = await exits.enter_async_context(running(SchedulerService, config,
                                                            "scheduler"))  # fmt: skip
        await scheduler.follower.wait_ready(10)
        await stack.start_gateway()
        exits.push_async_callback(lambda: stack.stop_gateway() if stack._gateway_exit else _none())
        yield stack


async def _none() -> None:
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    path = chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, headless=True)
        try:
            yield b
        finally:
            await b.close()


class Page:
    """A browser page with its console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.text}")
                if m.type == "error" else None)  # fmt: skip
        page.on("pageerror", lambda e: self.errors.append(f"exception {e}"))


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, stack: Stack, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh page at laptop width on the dashboard; a screenshot at the end
    (``screenshot.png`` under the test's tmp_path); no console error allowed."""
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    p = Page(await context.new_page())
    try:
        yield p
        await p.page.screenshot(path=str(tmp_path / "screenshot.png"))
        assert p.errors == [], p.errors
    finally:
        await context.close()


async def open_dashboard(page: Page, url: str) -> None:
    await page.page.goto(url + "/")
    await page.page.wait_for_selector("body[data-ready=true]", timeout=15_000)


def encode(body: Any) -> bytes:
    return msgspec.json.encode(body)
