"""The budget and a program on its client module work under the NATS users of
``gpuroute up``: nothing they do is a permissions violation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemas import budget as b
from schemas.budget import AssetEvicted
from schemas.subjects import BUDGET_CLIENT
from services import cli
from services.budget.client import BudgetClient
from services.runtime.bus import Bus
from services.runtime.config import load_config
from services.runtime.credentials import find_credentials
from services.runtime.errors import ServiceCallError
from services.runtime.permissions import permissions
from services.runtime.runner import NATS_URL_FILE, run
from tests.support import poll


def test_the_budget_client_user_has_its_own_inbox_and_only_the_client_calls() -> None:
    perms = permissions(BUDGET_CLIENT)
    assert "_INBOX.budget-client.>" in perms.subscribe and "_INBOX.>" not in perms.subscribe
    assert {b.REGISTER, b.ASSET_REGISTER, b.SPAN} <= set(perms.publish)
    assert b.APPLY not in perms.publish and "budget.state" not in perms.publish
    assert "$JS.API.STREAM.MSG.GET.GPUROUTE" in permissions("budget").publish


async def test_the_budget_and_its_client_work_under_the_users_of_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(data_dir=str(tmp_path / "data"), nats__port=0, http__port=0)
    running, stop = asyncio.Event(), asyncio.Event()
    factories = [(n, cli._load(cli.SERVICES[n])) for n in ("store", "budget")]
    task = asyncio.create_task(
        run(config, factories, stop=stop,
            announce=lambda line: line.startswith("gpuroute: running") and running.set())
    )  # fmt: skip
    try:
        await asyncio.wait_for(running.wait(), 60)
        data = config.data_path
        url = (data / NATS_URL_FILE).read_text().strip()
        scheduler = await Bus.connect(
            url, source="scheduler", credentials=find_credentials(data, "scheduler")
        )
        client = await BudgetClient.connect(
            url, owner="painter", credentials=find_credentials(data, BUDGET_CLIENT)
        )
        try:
            # before the budget could read its newest change (MSG.GET) it waited 5 s
            # per subject for a reply the server refused. poll: a service in the
            # runner says it is ready only by answering (503 until then)
            await poll(lambda: _ready(scheduler), timeout=15, interval=0.1)
            evicted: asyncio.Queue[AssetEvicted] = asyncio.Queue()
            await client.on_evict(evicted.put_nowait)
            await client.register("sdxl", 700, kind="checkpoint")
            await client.touch("sdxl")
            answer = await client.register_job("r1", vram_mb=10)
            assert answer.queue_state == "queued"
            with client.profile("hydrate", category="render"):
                pass
            got = await scheduler.call(b.ASSET_EVICT, {"target_mb": 100}, b.Evicted)
            assert got.evicted == ["sdxl"]
            assert (await asyncio.wait_for(evicted.get(), 10)).asset_id == "sdxl"
        finally:
            await client.close()
            await scheduler.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    refused = [str(r.__dict__) for r in caplog.records
               if "permissions violation" in str(r.__dict__).lower()]  # fmt: skip
    assert refused == []


async def _ready(bus: Bus) -> bool:
    try:
        await bus.call(b.SNAPSHOT, {}, b.BudgetSnapshot, timeout=2)
    except ServiceCallError as e:
        if e.code not in (503, 504):
            raise
        return False
    return True
